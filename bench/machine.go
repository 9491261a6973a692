package bench

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Machine describes where a run took place.
type Machine struct {
	CPU       string  `json:"cpu"`
	CPUs      int     `json:"cpus"`
	MemoryGiB float64 `json:"memory_gib"`
	Kernel    string  `json:"kernel"`
	Go        string  `json:"go"`
	Platform  string  `json:"platform"`
	// GOGC is the garbage collector setting of every process of the run.
	GOGC string `json:"gogc"`
}

// String describes the machine on one line.
func (m Machine) String() string {
	return fmt.Sprintf("%s, %d CPUs, %.0f GiB RAM, Linux %s, %s %s, GOGC=%s",
		m.CPU, m.CPUs, m.MemoryGiB, m.Kernel, m.Go, m.Platform, m.GOGC)
}

func describeMachine() Machine {
	m := Machine{
		CPU:      procField("/proc/cpuinfo", "model name", ":"),
		CPUs:     runtime.NumCPU(),
		Kernel:   strings.TrimSpace(readText("/proc/sys/kernel/osrelease")),
		Go:       runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH,
		GOGC:     os.Getenv("GOGC"),
	}
	if m.GOGC == "" {
		m.GOGC = "100 (default)"
	}
	if kb, err := strconv.ParseFloat(strings.TrimSuffix(procField("/proc/meminfo", "MemTotal", ":"), " kB"), 64); err == nil {
		m.MemoryGiB = kb / (1 << 20)
	}
	return m
}

// procField returns the value of the first "name<sep> value" line of path.
func procField(path, name, sep string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), sep)
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func readText(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return string(b)
}
