package enginebench

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// countSyncs runs work (n operations) with strace attached to this
// process and returns the fsync and fdatasync calls of all its threads
// (the embedded NATS servers and the stores included) per operation, or
// -1 when strace is missing or cannot attach. strace slows every system
// call while attached, so work is not timed.
func countSyncs(b *testing.B, n int, work func() error) float64 {
	b.Helper()
	path, err := exec.LookPath("strace")
	if err != nil {
		b.Log("strace not found: no syncs/op")
		return -1
	}
	out := filepath.Join(b.TempDir(), "strace.txt")
	cmd := exec.Command(path, "-f", "-c", "-o", out, "-e", "trace=fsync,fdatasync", "-p", strconv.Itoa(os.Getpid()))
	stderr, err := cmd.StderrPipe()
	require.NoError(b, err)
	threads, err := os.ReadDir("/proc/self/task")
	require.NoError(b, err)
	require.NoError(b, cmd.Start())
	// strace says "Process N attached" once per thread; work must not
	// start before every thread that exists now is traced (later ones
	// are followed by -f).
	attached := make(chan struct{})
	var count atomic.Int64 // threads attached
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "attached") {
				if count.Add(1) == int64(len(threads)) {
					close(attached)
				}
			}
		}
		if count.Load() < int64(len(threads)) {
			close(attached)
		}
	}()
	select {
	case <-attached:
	case <-time.After(10 * time.Second):
	}
	werr := work()
	_ = cmd.Process.Signal(os.Interrupt)
	_ = cmd.Wait()
	require.NoError(b, werr)
	data, err := os.ReadFile(out)
	if err != nil || count.Load() == 0 {
		b.Logf("strace could not attach: no syncs/op")
		return -1
	}
	// With no call traced, strace -c writes nothing: 0 syncs.
	calls := 0
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && (f[len(f)-1] == "fsync" || f[len(f)-1] == "fdatasync") {
			c, err := strconv.Atoi(f[3])
			require.NoError(b, err, line)
			calls += c
		}
	}
	return float64(calls) / float64(n)
}
