package bench

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ProcessStats is the memory of one process after two forced collections,
// and its CPU time before them.
type ProcessStats struct {
	// HeapInuse and StackInuse are from runtime.MemStats.
	HeapInuse  uint64 `json:"heap_inuse"`
	StackInuse uint64 `json:"stack_inuse"`
	// RSS is VmRSS from /proc/self/status (0 where there is none).
	RSS uint64 `json:"rss"`
	// PeakRSS is VmHWM: the highest resident memory since the process
	// started or since the last resetPeakRSS.
	PeakRSS    uint64 `json:"peak_rss"`
	Goroutines int    `json:"goroutines"`
	// CPU is the process's user and system CPU time so far, read before
	// the forced collections so that they are not counted.
	CPU time.Duration `json:"cpu_ns"`
}

// Heap returns the Go memory the process holds: heap spans and stacks.
func (s ProcessStats) Heap() uint64 { return s.HeapInuse + s.StackInuse }

// readProcessStats collects garbage twice (the second pass frees what
// finalizers released) and reads the process's memory.
func readProcessStats() ProcessStats {
	cpu := cpuTime()
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return ProcessStats{
		HeapInuse:  m.HeapInuse,
		StackInuse: m.StackInuse,
		RSS:        statusBytes("VmRSS:"),
		PeakRSS:    statusBytes("VmHWM:"),
		Goroutines: runtime.NumGoroutine(),
		CPU:        cpu,
	}
}

// cpuTime returns the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetPeakRSS starts a new VmHWM period: the peak becomes the current
// resident memory (Linux's clear_refs, value 5).
func resetPeakRSS() error {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// statusBytes returns the kB figure of the /proc/self/status line starting
// with field, in bytes, or 0 if it cannot be read.
func statusBytes(field string) uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), field); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// raiseOpenFiles lifts RLIMIT_NOFILE to want (or as high as allowed), so
// that thousands of sessions fit. It returns the resulting soft limit.
func raiseOpenFiles(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	// Raising the hard limit needs privileges; fall back to the hard limit.
	if lim.Max < want {
		raised := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			return want, nil
		}
	}
	lim.Cur = min(want, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("setrlimit: %w", err)
	}
	return lim.Cur, nil
}

// StartCPUProfile writes a CPU profile of this process to path until the
// returned stop is called.
func StartCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
