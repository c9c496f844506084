package main

import (
	"math"
	"math/bits"
	"sync/atomic"
)

// Hist is a latency histogram with fixed log-linear buckets (HDR-like: 64
// sub-buckets per power of two above 128, so a value is known to within
// 1/64 ≈ 1.6 %). Values are in microseconds. Record never allocates; it is
// safe for concurrent use (one atomic add per sample).
type Hist struct {
	counts [histBuckets]atomic.Uint64
}

const (
	histSubBits = 6
	histSub     = 1 << histSubBits // 64
	histLinear  = 2 * histSub      // values below this have their own bucket
	histMaxLen  = 41               // values up to 2^41 µs (≈ 25 days) are kept apart
	histBuckets = histLinear + (histMaxLen-histSubBits-1)*histSub
)

func bucketOf(v uint64) int {
	if v < histLinear {
		return int(v)
	}
	l := bits.Len64(v)
	if l > histMaxLen {
		return histBuckets - 1
	}
	shift := l - (histSubBits + 1)
	return histLinear + (shift-1)*histSub + int(v>>uint(shift)) - histSub
}

// bucketRange is the lowest value of bucket i and its width.
func bucketRange(i int) (low, width uint64) {
	if i < histLinear {
		return uint64(i), 1
	}
	j := i - histLinear
	shift := uint(j/histSub + 1)
	m := uint64(j%histSub + histSub)
	return m << shift, 1 << shift
}

// Record adds one sample of v microseconds (negative values count as 0).
func (h *Hist) Record(us int64) {
	if us < 0 {
		us = 0
	}
	h.counts[bucketOf(uint64(us))].Add(1)
}

// Merge adds o's counts to h.
func (h *Hist) Merge(o *Hist) {
	for i := range o.counts {
		if n := o.counts[i].Load(); n != 0 {
			h.counts[i].Add(n)
		}
	}
}

// Count is the number of samples.
func (h *Hist) Count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// Quantile is the value (µs, the middle of its bucket) below which a
// fraction q of the samples lie; NaN without samples.
func (h *Hist) Quantile(q float64) float64 {
	total := h.Count()
	if total == 0 {
		return math.NaN()
	}
	target := uint64(math.Ceil(q * float64(total)))
	if target < 1 {
		target = 1
	}
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		if cum >= target {
			low, w := bucketRange(i)
			return float64(low) + float64(w-1)/2
		}
	}
	low, w := bucketRange(histBuckets - 1)
	return float64(low + w - 1)
}
