package bench

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/codi2/codi2/internal/latency"
)

// fsyncProbes is how many write+fsync pairs probeFsync times.
const fsyncProbes = 200

// machine describes the host; fsync is probed in dir.
func machine(dir string) (Machine, error) {
	m := Machine{
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		CPUs:       runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
		CPUModel:   cpuModel("/proc/cpuinfo"),
		LoadAvg:    loadAvg("/proc/loadavg"),
	}
	s, err := probeFsync(dir, fsyncProbes)
	if err != nil {
		return m, err
	}
	m.FsyncP50, m.FsyncP99 = s.P50, s.P99
	return m, nil
}

// probeFsync times n appends of 100 bytes, each followed by fsync, to a
// scratch file in dir: the floor under any durable commit on that disk.
func probeFsync(dir string, n int) (latency.Summary, error) {
	f, err := os.CreateTemp(dir, "fsync-probe-*")
	if err != nil {
		return latency.Summary{}, fmt.Errorf("bench: fsync probe: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	line := []byte(strings.Repeat("x", 99) + "\n")
	rec := latency.NewRecorder(n)
	for range n {
		t0 := time.Now()
		if _, err := f.Write(line); err != nil {
			return latency.Summary{}, fmt.Errorf("bench: fsync probe: %w", err)
		}
		if err := f.Sync(); err != nil {
			return latency.Summary{}, fmt.Errorf("bench: fsync probe: %w", err)
		}
		rec.Record(time.Since(t0))
	}
	return rec.Summary(), nil
}

// cpuModel returns the first "model name" of a /proc/cpuinfo file, or "".
func cpuModel(path string) string {
	f, err := os.Open(filepath.Clean(path))
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// loadAvg returns the 1-minute load average of a /proc/loadavg file, or "".
func loadAvg(path string) string {
	b, err := os.ReadFile(filepath.Clean(path))
	if err != nil {
		return ""
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return ""
}
