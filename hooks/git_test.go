package hooks_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/codi2/codi2/internal/gittest"

	"github.com/codi2/codi2/hooks"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/codi2/codi2/state"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	return gittest.Run(t, dir, args...)
}

func writeFile(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
}

func TestPreCommit_RefusesReservedFiles(t *testing.T) {
	url, nc := startServer(t)
	root, project := gitRepo(t, true)
	ctx := context.Background()
	writeFile(t, root, "lib/old.go", "package lib\n")
	git(t, root, "add", ".")
	git(t, root, "commit", "-q", "-m", "old")

	recs, err := stateClient(t, nc, "agent-2").Reserve(ctx, project, []string{"src/**", "lib/old.go"}, state.ReserveOptions{TTL: time.Hour})
	require.NoError(t, err)
	_, err = stateClient(t, nc, "agent-4").Reserve(ctx, project, []string{"docs/**"}, state.ReserveOptions{TTL: time.Hour, Shared: true})
	require.NoError(t, err)
	check := func(agent string) (error, string) {
		var warn bytes.Buffer
		err := hooks.PreCommit(ctx, hooks.GitConfig{Agent: agent, NATSURL: url, Dir: root, Budget: 5 * time.Second}, &warn)
		return err, warn.String()
	}

	err, _ = check("agent-3")
	assert.NoError(t, err, "nothing staged")
	writeFile(t, root, "docs/a.md", "x")
	writeFile(t, root, "README.md", "x")
	git(t, root, "add", ".")
	err, _ = check("agent-3")
	assert.NoError(t, err, "a shared reservation and a free file")

	writeFile(t, root, "src/main.go", "package main\n")
	git(t, root, "add", ".")
	git(t, root, "mv", "lib/old.go", "lib/new.go")
	err, warn := check("agent-3")
	require.ErrorIs(t, err, hooks.ErrCommitRefused)
	assert.Empty(t, warn)
	until := func(r state.Record) string { return " until " + r.ExpiresAt.UTC().Format(time.RFC3339) }
	assert.Equal(t, "commit refused: files reserved by another agent:\n"+
		"  lib/old.go is reserved by agent-2 (pattern lib/old.go)"+until(recs[1])+"\n"+
		"  src/main.go is reserved by agent-2 (pattern src/**)"+until(recs[0])+"\n"+
		"Ask the holder to release them, unstage them, or commit with --no-verify", err.Error(), "a rename changes its old path too")
	err, _ = check("agent-2")
	assert.NoError(t, err, "own reservations")
	err, _ = check("")
	require.ErrorIs(t, err, hooks.ErrCommitRefused, "nobody's: every exclusive reservation blocks")
	assert.Contains(t, err.Error(), "set CODI2_AGENT to your agent id if they are yours")
}

func TestPreCommit_FailsOpen(t *testing.T) {
	root, _ := gitRepo(t, true)
	writeFile(t, root, "src/main.go", "x")
	git(t, root, "add", ".")
	empty, _ := gitRepo(t, false)
	dead := "nats://127.0.0.1:" + strconv.Itoa(proctest.FreePort(t))
	for name, tc := range map[string]struct{ dir, project, want string }{
		"server down": {root, "", "codi2: pre-commit reservation check skipped: codi2 unreachable at " + dead + "\n"},
		"not a repo":  {t.TempDir(), "", "not a git repository"},
		"no commits":  {empty, "", "no commits yet"},
	} {
		t.Run(name, func(t *testing.T) {
			var warn bytes.Buffer
			start := time.Now()
			err := hooks.PreCommit(context.Background(), hooks.GitConfig{Agent: "agent-3", NATSURL: dead, Dir: tc.dir, Project: tc.project}, &warn)
			assert.NoError(t, err)
			assert.Less(t, time.Since(start), 2*time.Second)
			assert.Contains(t, warn.String(), tc.want)
		})
	}
}

const userHook = "#!/bin/sh\necho user hook ran >&2\nexit 0\n"

func TestGitInstall_ChainsAndRestores(t *testing.T) {
	root, _ := gitRepo(t, true)
	ctx := context.Background()
	hook := filepath.Join(root, ".git", "hooks", "pre-commit")
	require.NoError(t, os.WriteFile(hook, []byte(userHook), 0o755))

	did, err := hooks.GitInstall(ctx, root, "", true)
	require.NoError(t, err)
	assert.Len(t, did, 2)
	b, _ := os.ReadFile(hook)
	assert.Equal(t, userHook, string(b), "dry run: nothing changed")

	did, err = hooks.GitInstall(ctx, root, "/opt/my codi2/codi2", false)
	require.NoError(t, err)
	assert.Equal(t, []string{"moved " + hook + " to " + hook + ".codi2-chained (run after the codi2 check)", "wrote " + hook}, did)
	b, err = os.ReadFile(hook)
	require.NoError(t, err)
	assert.Contains(t, string(b), "'/opt/my codi2/codi2' hook git-pre-commit || exit 1\n")
	st, err := os.Stat(hook)
	require.NoError(t, err)
	assert.NotZero(t, st.Mode()&0o100, "executable")
	did, err = hooks.GitInstall(ctx, root, "/opt/my codi2/codi2", false)
	require.NoError(t, err)
	assert.Empty(t, did, "idempotent")
	did, err = hooks.GitInstall(ctx, root, "codi2", false)
	require.NoError(t, err)
	assert.Equal(t, []string{"wrote " + hook}, did, "another command: rewritten, the chained hook kept")

	did, err = hooks.GitUninstall(ctx, root, true)
	require.NoError(t, err)
	assert.Len(t, did, 2)
	did, err = hooks.GitUninstall(ctx, root, false)
	require.NoError(t, err)
	assert.Len(t, did, 2)
	b, err = os.ReadFile(hook)
	require.NoError(t, err)
	assert.Equal(t, userHook, string(b), "the user's hook is back, byte for byte")
	_, err = os.Stat(hook + ".codi2-chained")
	assert.ErrorIs(t, err, os.ErrNotExist)
	did, err = hooks.GitUninstall(ctx, root, false)
	require.NoError(t, err)
	assert.Empty(t, did, "not ours: left alone")
}

// In a worktree the hook goes where git runs it from: the common hooks
// directory; without a user hook, uninstall leaves none.
func TestGitInstall_WorktreeAndErrors(t *testing.T) {
	root, _ := gitRepo(t, true)
	ctx := context.Background()
	wt := filepath.Join(t.TempDir(), "wt")
	git(t, root, "worktree", "add", "-q", wt)
	did, err := hooks.GitInstall(ctx, wt, "", false)
	require.NoError(t, err)
	hook := filepath.Join(root, ".git", "hooks", "pre-commit")
	assert.Equal(t, []string{"wrote " + hook}, did)
	did, err = hooks.GitUninstall(ctx, root, false)
	require.NoError(t, err)
	assert.Equal(t, []string{"removed " + hook}, did)
	_, err = os.Stat(hook)
	assert.ErrorIs(t, err, os.ErrNotExist)

	require.NoError(t, os.WriteFile(hook, []byte(userHook), 0o755))
	require.NoError(t, os.WriteFile(hook+".codi2-chained", []byte(userHook), 0o755))
	_, err = hooks.GitInstall(ctx, root, "", false)
	assert.ErrorContains(t, err, "codi2-chained exists")

	_, err = hooks.GitInstall(ctx, t.TempDir(), "", false)
	assert.ErrorIs(t, err, hooks.ErrNotManaged)
	_, err = hooks.GitUninstall(ctx, t.TempDir(), false)
	assert.ErrorIs(t, err, hooks.ErrNotManaged)
}
