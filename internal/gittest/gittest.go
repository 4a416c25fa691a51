// Package gittest makes throwaway git repositories for tests that need a
// real one: reservations are relative to a repository root and belong to
// the project its history names (internal/repo).
package gittest

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/repo"
)

// identity lets commits be made without a user's git configuration.
var identity = []string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t"}

// Try runs git with args in dir, with a fixed identity and env added, and
// returns its combined output.
func Try(dir string, env []string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), identity...), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Run is Try without extra environment, failing t when git fails.
func Run(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := Try(dir, nil, args...)
	require.NoError(t, err, "git %v: %s", args, out)
	return out
}

// Init makes an empty repository (no commits) in a new temporary
// directory and returns its root, symlinks resolved. It skips t when git is
// not installed.
func Init(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	Run(t, dir, "init", "-q")
	r, _ := repo.Find(context.Background(), dir)
	return r.Root
}

// Repo makes a repository with one empty commit in a new temporary
// directory and returns its root (symlinks resolved) and project name.
func Repo(t testing.TB) (root, project string) {
	t.Helper()
	root = Init(t)
	Run(t, root, "commit", "-q", "--allow-empty", "-m", "first")
	r, err := repo.Find(context.Background(), root)
	require.NoError(t, err)
	return r.Root, r.Project
}
