// Package proctest builds the codi2 binary and runs it as a child process, so
// that crash tests can kill -9 a real server and restart it on its data.
package proctest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
)

// Build compiles ./cmd/codi2 of this module into a temporary directory and
// returns the binary's path. The Go build cache makes repeated calls cheap.
func Build(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	require.NoError(t, err)
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(t.TempDir(), "codi2")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/codi2")
	cmd.Dir = root
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", b)
	consultSources(t, root)
	return bin
}

// consultSources opens every Go source and module file of the module, so
// that go test's result cache, which tracks the files a test opens but not
// what a `go build` child reads, invalidates a cached pass of a test that
// ran the binary when any of the binary's sources change.
func consultSources(t testing.TB, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if (strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go")) || name == "go.mod" || name == "go.sum" {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			return f.Close()
		}
		return nil
	})
	require.NoError(t, err)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Server is a running `codi2 serve` child process.
type Server struct {
	// URL is the NATS client URL of the server.
	URL string
	// DataDir is the server's --data directory.
	DataDir string

	bin    string
	port   int
	extra  []string
	cmd    *exec.Cmd
	logs   *Buffer
	exited chan struct{}
	err    error
}

// Start runs `bin serve` on dataDir with the NATS listener on port (0 picks
// one) and extra flags, waits until it logs that it is ready, and kills it
// when the test ends if it still runs.
func Start(t testing.TB, bin, dataDir string, port int, extra ...string) *Server {
	t.Helper()
	if port == 0 {
		port = FreePort(t)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args := append([]string{"serve", "--data", dataDir, "--nats-listen", addr,
		"--http-listen", "127.0.0.1:0", "--log-format", "json"}, extra...)
	s := &Server{URL: "nats://" + addr, DataDir: dataDir, bin: bin, port: port, extra: extra, logs: &Buffer{}, exited: make(chan struct{})}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout = s.logs
	s.cmd.Stderr = s.logs
	require.NoError(t, s.cmd.Start())
	go func() {
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(s.Kill)
	deadline := time.After(30 * time.Second)
	for !strings.Contains(s.logs.String(), `"message":"codi2 ready"`) {
		select {
		case <-s.exited:
			t.Fatalf("codi2 serve exited before it was ready: %v\n%s", s.err, s.logs.String())
		case <-deadline:
			t.Fatalf("codi2 serve not ready after 30s:\n%s", s.logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return s
}

// Connect opens a client connection to the server that reconnects, without
// limit and quickly, across kills and restarts; it is closed when the test
// ends.
func (s *Server) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.URL, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// Kill sends SIGKILL and waits for the process to exit. It is a no-op on an
// exited process.
func (s *Server) Kill() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// KillUnderLoad crashes the server cycles times while loads run against
// it. Each cycle starts every load in a goroutine of its own with a fresh
// context, waits until acked (the loads' count of acknowledged writes, read
// concurrently) has grown by perCycle, kills the server with SIGKILL, cancels
// the loads, waits for them to return and restarts the server on the same
// data directory, port and flags. It returns the running server.
func (s *Server) KillUnderLoad(t testing.TB, cycles, perCycle int, acked func() int, loads ...func(ctx context.Context, cycle int)) *Server {
	t.Helper()
	for cycle := range cycles {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, load := range loads {
			wg.Go(func() { load(ctx, cycle) })
		}
		target := acked() + perCycle
		require.Eventually(t, func() bool { return acked() >= target }, 60*time.Second, time.Millisecond,
			"cycle %d: %d of %d writes acknowledged", cycle, acked(), target)
		s.Kill()
		cancel()
		wg.Wait()
		t.Logf("cycle %d: killed with %d writes acknowledged", cycle, acked())
		s = Start(t, s.bin, s.DataDir, s.port, s.extra...)
	}
	return s
}

// Stop sends SIGTERM and waits up to timeout for the process to exit, then
// returns its exit code (-1 if it had to be killed).
func (s *Server) Stop(timeout time.Duration) int {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	select {
	case <-s.exited:
		return s.cmd.ProcessState.ExitCode()
	case <-ctx.Done():
		s.Kill()
		return -1
	}
}

// Bin is the binary the server runs, and Port its NATS port: for a test
// that restarts it with Start on the same data directory and port.
func (s *Server) Bin() string { return s.bin }

// Port is the server's NATS port.
func (s *Server) Port() int { return s.port }

// Logs returns everything the process has written so far.
func (s *Server) Logs() string { return s.logs.String() }

// PID is the server process's id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// HTTP is the base URL of the server's HTTP listener, from its ready line.
func (s *Server) HTTP(t testing.TB) string {
	t.Helper()
	for _, line := range strings.Split(s.logs.String(), "\n") {
		if !strings.Contains(line, `"message":"codi2 ready"`) {
			continue
		}
		var ready struct {
			HTTP string `json:"http"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &ready))
		return ready.HTTP
	}
	t.Fatalf("no ready line:\n%s", s.logs.String())
	return ""
}

// Restart stops the server with SIGTERM (it must exit 0 within 30 s) and
// starts it again on the same data directory, port and flags.
func (s *Server) Restart(t testing.TB) *Server {
	t.Helper()
	require.Equal(t, 0, s.Stop(30*time.Second), "SIGTERM exits 0:\n%s", s.Logs())
	return Start(t, s.bin, s.DataDir, s.port, s.extra...)
}

// Run runs bin with args to its end (at most a minute) and returns its exit
// code and everything it wrote to stdout and stderr.
func Run(t testing.TB, bin string, args ...string) (code int, output string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run %s %v: %v", bin, args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// Buffer is a bytes.Buffer that a process, a logger and a test can share:
// Write and String are safe for concurrent use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (w *Buffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// String returns everything written so far.
func (w *Buffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// SmallDisk mounts a tmpfs of size bytes on a new temporary directory and
// returns it, so that a test can run a server on a disk that small (and
// fill it); it is unmounted when the test ends. The test is skipped, saying
// why, where mounting is not permitted (mount(2) needs root or
// CAP_SYS_ADMIN).
func SmallDisk(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)); err != nil {
		t.Skipf("cannot mount a %d-byte tmpfs for a small disk (needs root or CAP_SYS_ADMIN): %v", size, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}
