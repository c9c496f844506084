package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// Report is a run's result (the -json file).
type Report struct {
	Scenario string  `json:"scenario"`
	Date     string  `json:"date"`
	Room     string  `json:"room"`
	N        int     `json:"n"`
	K        int     `json:"k"`
	RoomSize int     `json:"room_size,omitempty"` // idle-ws: sockets per room (0: one room)
	Rooms    int     `json:"rooms,omitempty"`
	Rate     float64 `json:"rate_per_s"`
	WarmupS  float64 `json:"warmup_s"`
	WindowS  float64 `json:"window_s"` // the measured steady window

	ClientsOK     int `json:"clients_ok"`
	ClientsFailed int `json:"clients_failed"`

	Tracks          int      `json:"tracks_received"`
	PacketsReceived int64    `json:"packets_received"`
	PacketsExpected int64    `json:"packets_expected"`
	ForwardedPPS    float64  `json:"forwarded_pps"`
	VideoPPS        float64  `json:"forwarded_video_pps"`
	LossPercent     float64  `json:"loss_percent"`
	LatencyUS       *latQ    `json:"latency_us,omitempty"`
	JoinKind        string   `json:"join_kind,omitempty"`
	JoinMS          *joinQ   `json:"join_ms,omitempty"`
	ChatSent        int      `json:"chat_sent,omitempty"`
	ChatReceived    int64    `json:"chat_received,omitempty"`
	ChatLatencyUS   *latQ    `json:"chat_latency_us,omitempty"`
	Server          srvRep   `json:"server"`
	Generator       genRep   `json:"generator"`
	Valid           bool     `json:"valid"`
	InvalidReason   string   `json:"invalid_reason,omitempty"`
	Errors          []string `json:"errors,omitempty"`
}

type latQ struct {
	P50     float64 `json:"p50"`
	P99     float64 `json:"p99"`
	P999    float64 `json:"p99_9"`
	Samples uint64  `json:"samples"`
}

type joinQ struct {
	P50     float64 `json:"p50"`
	P99     float64 `json:"p99"`
	Max     float64 `json:"max"`
	Samples int     `json:"samples"`
}

type perCopy struct {
	User   float64 `json:"user"`
	Kernel float64 `json:"kernel"`
	Total  float64 `json:"total"`
}

type srvRep struct {
	CPUUserS        float64  `json:"cpu_user_s"`
	CPUSystemS      float64  `json:"cpu_system_s"`
	CPUPercent      float64  `json:"cpu_percent"` // of one core
	CPUUSPerCopy    *perCopy `json:"cpu_us_per_copy,omitempty"`
	RSSBeforeKiB    int64    `json:"rss_before_kib"`
	RSSAfterKiB     int64    `json:"rss_after_kib"`
	RSSPerClientKiB float64  `json:"rss_per_client_kib"`
	RSSPerClientOf  string   `json:"rss_per_client_of,omitempty"`
}

type genRep struct {
	CPUS        float64 `json:"cpu_s"`
	Cores       int     `json:"cores"`
	LoadPerCore float64 `json:"load_per_core"` // cpu_s / window_s / cores; > 0.8: invalid
}

func quantiles(h *Hist) *latQ {
	n := h.Count()
	if n == 0 {
		return nil
	}
	return &latQ{P50: h.Quantile(0.5), P99: h.Quantile(0.99), P999: h.Quantile(0.999), Samples: n}
}

func (r *Report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func ms(us float64) string {
	if math.IsNaN(us) {
		return "-"
	}
	return fmt.Sprintf("%.2f ms", us/1000)
}

func (r *Report) printSummary(w io.Writer) {
	fmt.Fprintf(w, "scenario %s  n=%d k=%d  window %.1f s (warm-up %.1f s)  clients %d ok, %d failed\n",
		r.Scenario, r.N, r.K, r.WindowS, r.WarmupS, r.ClientsOK, r.ClientsFailed)
	if r.Rooms > 1 {
		fmt.Fprintf(w, "  %d rooms of up to %d\n", r.Rooms, r.RoomSize)
	}
	if r.Tracks > 0 || r.PacketsReceived > 0 {
		fmt.Fprintf(w, "  forwarded %.0f packets/s (video %.0f) over %d tracks, loss %.3f %%\n", r.ForwardedPPS, r.VideoPPS, r.Tracks, r.LossPercent)
	}
	if l := r.LatencyUS; l != nil {
		fmt.Fprintf(w, "  one-way latency p50 %s  p99 %s  p99.9 %s  (%d samples)\n", ms(l.P50), ms(l.P99), ms(l.P999), l.Samples)
	}
	if j := r.JoinMS; j != nil {
		fmt.Fprintf(w, "  join (%s) p50 %.0f ms  p99 %.0f ms  max %.0f ms  (%d)\n", r.JoinKind, j.P50, j.P99, j.Max, j.Samples)
	}
	if l := r.ChatLatencyUS; l != nil {
		fmt.Fprintf(w, "  chat: %d sent, %d received; fan-out latency p50 %s  p99 %s\n", r.ChatSent, r.ChatReceived, ms(l.P50), ms(l.P99))
	}
	s := r.Server
	if s.RSSAfterKiB > 0 {
		fmt.Fprintf(w, "  server CPU user %.2f s, kernel %.2f s (%.0f %% of a core)", s.CPUUserS, s.CPUSystemS, s.CPUPercent)
		if c := s.CPUUSPerCopy; c != nil {
			fmt.Fprintf(w, "; per forwarded copy %.2f µs user + %.2f µs kernel = %.2f µs", c.User, c.Kernel, c.Total)
		}
		fmt.Fprintf(w, "\n  server RSS %d → %d KiB", s.RSSBeforeKiB, s.RSSAfterKiB)
		if s.RSSPerClientOf != "" {
			fmt.Fprintf(w, " (%.0f KiB per %s)", s.RSSPerClientKiB, s.RSSPerClientOf)
		}
		fmt.Fprintln(w)
	}
	g := r.Generator
	fmt.Fprintf(w, "  generator CPU %.2f s on %d core(s): %.0f %% per core\n", g.CPUS, g.Cores, g.LoadPerCore*100)
	if !r.Valid {
		fmt.Fprintf(w, "  INVALID: %s\n", r.InvalidReason)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "  %d errors, first: %s\n", len(r.Errors), strings.Join(r.Errors[:min(3, len(r.Errors))], "; "))
	}
}
