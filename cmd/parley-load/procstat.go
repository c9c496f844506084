package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// clkTck is USER_HZ, the unit of utime and stime in /proc/<pid>/stat. It is
// 100 on every Linux architecture Parley runs on (`getconf CLK_TCK` prints
// 100 on the benchmark machine); the kernel fixes it for user space
// whatever CONFIG_HZ is.
const clkTck = 100

// cpuTimes is a process's CPU time in seconds.
type cpuTimes struct{ User, System float64 }

func (c cpuTimes) Total() float64 { return c.User + c.System }

// parseStat reads utime and stime (fields 14 and 15) from the text of
// /proc/<pid>/stat. The command name (field 2) is in parentheses and may
// hold spaces or parentheses, so fields are counted after the last ')'.
func parseStat(data []byte) (cpuTimes, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return cpuTimes{}, errors.New("stat: no ')'")
	}
	f := bytes.Fields(data[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return cpuTimes{}, fmt.Errorf("stat: %d fields after the name", len(f))
	}
	u, err := strconv.ParseUint(string(f[11]), 10, 64)
	if err != nil {
		return cpuTimes{}, fmt.Errorf("stat utime: %w", err)
	}
	s, err := strconv.ParseUint(string(f[12]), 10, 64)
	if err != nil {
		return cpuTimes{}, fmt.Errorf("stat stime: %w", err)
	}
	return cpuTimes{User: float64(u) / clkTck, System: float64(s) / clkTck}, nil
}

// parseVmRSS returns VmRSS in KiB from the text of /proc/<pid>/status.
func parseVmRSS(data []byte) (int64, error) {
	for _, line := range bytes.Split(data, []byte{'\n'}) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("status: odd VmRSS line %q", line)
		}
		return strconv.ParseInt(string(f[0]), 10, 64)
	}
	return 0, errors.New("status: no VmRSS")
}

func procCPU(pid string) (cpuTimes, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	return parseStat(b)
}

func procRSS(pid string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}
