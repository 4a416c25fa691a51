package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func runIn(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr proctest.Buffer
	code := runWith(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestRun_HookAndHooks(t *testing.T) {
	dead := "nats://127.0.0.1:" + strconv.Itoa(proctest.FreePort(t))
	code, out, _ := runIn(t, `{"session_id":"s","hook_event_name":"Stop"}`, "hook", "claude", "Stop", "--nats-url", dead, "--agent", "agent-2")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "codi2 unreachable")
	code, _, errs := runIn(t, "", "hook", "codex", "Stop")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "usage: codi2 hook claude EVENT")
	code, _, errs = runIn(t, "", "hook", "claude", "Stop", "--nope")
	assert.Equal(t, 1, code, errs)
	code, out, _ = runIn(t, "not json", "hook", "claude", "Stop", "--nats-url", dead)
	assert.Equal(t, 0, code, "a hook fails open")
	assert.Contains(t, out, "not Claude Code's hook JSON")

	dir := t.TempDir()
	code, out, errs = runIn(t, "", "hooks", "install", "--dir", dir, "--dry-run")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, `+     "SessionStart": [`)
	_, err := os.Stat(filepath.Join(dir, ".claude", "settings.json"))
	assert.True(t, os.IsNotExist(err), "dry run writes nothing")
	code, out, _ = runIn(t, "", "hooks", "install", "--dir", dir)
	require.Equal(t, 0, code)
	assert.Contains(t, out, "wrote "+filepath.Join(dir, ".claude", "settings.json"))
	code, out, _ = runIn(t, "", "hooks", "install", "--dir", dir)
	assert.Equal(t, 0, code)
	assert.Equal(t, "nothing to change\n", out)
	code, _, _ = runIn(t, "", "hooks", "uninstall", "--dir", dir)
	assert.Equal(t, 0, code)
	code, _, errs = runIn(t, "", "hooks", "frob")
	assert.Equal(t, 2, code, "bad usage")
	assert.Contains(t, errs, "usage: codi2 hooks install|uninstall")
	code, _, _ = runIn(t, "", "hooks", "install", "--nope")
	assert.Equal(t, 2, code, "bad usage")
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".mcp.json"), []byte("[]"), 0o644))
	code, _, errs = runIn(t, "", "hooks", "install", "--dir", dir)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, ".mcp.json")
}

func TestRun_MCP(t *testing.T) {
	b := bustest.Run(t)
	code, _, errs := runIn(t, "", "mcp", "--agent", "all", "--nats-url", b.ClientURL())
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, `agent "all"`)
	dead := "nats://127.0.0.1:" + strconv.Itoa(proctest.FreePort(t))
	code, _, errs = runIn(t, "", "mcp", "--agent", "a", "--nats-url", dead)
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "cannot reach the codi2 server")
	code, _, _ = runIn(t, "", "mcp", "--nope")
	assert.Equal(t, 2, code, "bad usage")
	code, _, errs = runIn(t, "", "mcp", "--agent", "a", "--nats-url", b.ClientURL(), "--http", "nope")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "--http nope")

	// Streamable HTTP until the context ends.
	port := proctest.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stderr proctest.Buffer
	go func() {
		done <- runWith(ctx, []string{"mcp", "--agent", "a", "--nats-url", b.ClientURL(), "--http", "127.0.0.1:" + strconv.Itoa(port)},
			strings.NewReader(""), &proctest.Buffer{}, &stderr)
	}()
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 10*time.Millisecond)
	cancel()
	assert.Equal(t, 0, <-done, stderr.String())
	assert.Contains(t, stderr.String(), "streamable HTTP on http://127.0.0.1:")

	// Over stdio, an input that ends ends the server.
	code, _, errs = runIn(t, "", "mcp", "--agent", "a", "--nats-url", b.ClientURL())
	assert.Equal(t, 0, code, errs)
}

// CODI2_NATS_URL, exported for the agent verbs, also points serve at an
// external NATS: when that fails, the error says where the URL came from.
func TestRun_ServeNATSURLFromEnv(t *testing.T) {
	dead := "nats://127.0.0.1:" + strconv.Itoa(proctest.FreePort(t))
	t.Setenv("CODI2_NATS_URL", dead)
	code, _, errs := runIn(t, "", "serve", "--data", t.TempDir(), "--nats-listen", "127.0.0.1:-1", "--http-listen", "127.0.0.1:0")
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "came from CODI2_NATS_URL")
	assert.True(t, flagGiven([]string{"--nats-url=x"}, "nats-url"))
	assert.True(t, flagGiven([]string{"-nats-url", "x"}, "nats-url"))
	assert.False(t, flagGiven([]string{"--nats-listen", "x"}, "nats-url"))
}

func TestRun_GitHook(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("git", "init", "-q")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	hook := filepath.Join(dir, ".git", "hooks", "pre-commit")

	code, out2, errs := runIn(t, "", "hooks", "install", "--git", "--dir", dir, "--dry-run")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out2, "would write "+hook+":\n#!/bin/sh\n")
	assert.NotContains(t, out2, "wrote ")
	_, err = os.Stat(hook)
	assert.True(t, os.IsNotExist(err), "dry run writes nothing")
	code, _, errs = runIn(t, "", "hooks", "install", "--git", "--dir", dir)
	require.Equal(t, 0, code, errs)
	_, err = os.Stat(hook)
	require.NoError(t, err)
	code, out2, _ = runIn(t, "", "hooks", "uninstall", "--git", "--dir", dir)
	assert.Equal(t, 0, code)
	assert.Contains(t, out2, "removed "+hook)
	code, _, errs = runIn(t, "", "hooks", "install", "--git", "--dir", t.TempDir())
	assert.Equal(t, 1, code)
	assert.Contains(t, errs, "not in a repository codi2 manages")

	dead := "nats://127.0.0.1:" + strconv.Itoa(proctest.FreePort(t))
	code, _, errs = runIn(t, "", "hook", "git-pre-commit", "--nats-url", dead, "--agent", "agent-3")
	assert.Equal(t, 0, code, "fails open: %s", errs)
	code, _, _ = runIn(t, "", "hook", "git-pre-commit", "--nope")
	assert.Equal(t, 1, code)
}
