package cli_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/cli"
	"github.com/codi2/codi2/filewatch"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// watch --files records a repository's changes from its root, relative to
// the root, and prints each once recorded.
func TestRun_WatchFiles(t *testing.T) {
	url := startServer(t)
	root := t.TempDir()
	git := exec.Command("git", "init", "-q", root)
	require.NoError(t, git.Run())
	require.NoError(t, os.MkdirAll(filepath.Join(root, "src"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, ".gitignore"), []byte("*.log\n"), 0o644))

	var errb bytes.Buffer
	w := &proctest.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	env := map[string]string{"CODI2_NATS_URL": url, "CODI2_AGENT": "agent-4"}
	go func() {
		done <- cli.Run(ctx, []string{"watch", "--files", filepath.Join(root, "src"), "--json", "--settle", "100ms"},
			cli.IO{Out: w, Err: &errb, Getenv: func(k string) string { return env[k] }})
	}()
	// The watcher may not be up yet: write until a change shows.
	require.Eventually(t, func() bool {
		_ = os.WriteFile(filepath.Join(root, "src", "main.go"), []byte("package main // "+time.Now().String()), 0o644)
		_ = os.WriteFile(filepath.Join(root, "src", "x.log"), []byte("ignored"), 0o644)
		return strings.Contains(w.String(), `"path":"src/main.go"`)
	}, 10*time.Second, 50*time.Millisecond, errb.String())
	cancel()
	require.Equal(t, cli.ExitOK, <-done, errb.String())
	line := strings.SplitN(w.String(), "\n", 2)[0]
	c := jsonLine[filewatch.Change](t, line)
	assert.Equal(t, "agent-4", c.Agent)
	assert.Len(t, c.SHA256, 64)
	assert.NotContains(t, w.String(), "x.log")

	r := run(t, url, "", "", "history", "--source", "agent-4", "--category", "file")
	assert.Contains(t, r.out, "src/main.go")
}

func TestRun_WatchFiles_BadUsage(t *testing.T) {
	for _, args := range [][]string{
		{"watch", "--files", "/nonexistent/dir"},
		{"watch", "--files", "a", "b"},
		{"watch", "--files", ".", "--agent", "a.b"},
	} {
		r := run(t, "nats://127.0.0.1:1", "", "", args...)
		assert.Equal(t, cli.ExitUsage, r.code, "%v: %s", args, r.err)
	}
}

// watch --files with no DIR outside a git repository is bad usage, not a
// recursive watch of whatever the current directory is (a new user's
// `cd /tmp && codi2 watch --files` recorded other programs' files); with
// DIR named it watches DIR, paths relative to it.
func TestRun_WatchFiles_NoDIROutsideARepository(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	r := run(t, "nats://127.0.0.1:1", "", "", "watch", "--files")
	assert.Equal(t, cli.ExitUsage, r.code, r.err)
	assert.Contains(t, r.err, "is not in a git repository: name the directory to watch (codi2 watch --files DIR)")

	// Named, it gets as far as the server (none here: exit 5).
	r = run(t, "nats://127.0.0.1:1", "", "", "watch", "--files", dir, "--timeout", "1s")
	assert.Equal(t, cli.ExitUnreachable, r.code, r.err)
}

// watch --files against a server that does not answer says so and exits
// 5 (CONTRACT.md §5), like every verb, instead of watching and logging
// "headers not supported" for each change it cannot publish.
func TestRun_WatchFiles_Unreachable(t *testing.T) {
	dead := "nats://127.0.0.1:" + strconv.Itoa(proctest.FreePort(t))
	root := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	env := map[string]string{"CODI2_NATS_URL": dead, "CODI2_AGENT": "agent-4"}
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, []string{"watch", "--files", root, "--timeout", "1s"},
			cli.IO{Out: &out, Err: &errb, Getenv: func(k string) string { return env[k] }})
	}()
	// Were it watching, this change would be published and fail.
	require.Eventually(t, func() bool {
		_ = os.WriteFile(filepath.Join(root, "a.txt"), []byte(time.Now().String()), 0o644)
		select {
		case code := <-done:
			done <- code
			return true
		default:
			return false
		}
	}, 9*time.Second, 50*time.Millisecond, "watch --files still running")
	code := <-done
	assert.Equal(t, cli.ExitUnreachable, code, errb.String())
	assert.Contains(t, errb.String(), "cannot reach the codi2 server at "+dead)
	assert.NotContains(t, errb.String(), "headers not supported")
	assert.Equal(t, 1, strings.Count(errb.String(), "\n"), "one line: %q", errb.String())
}
