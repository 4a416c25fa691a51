package repo_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/codi2/codi2/internal/pathglob"
	"github.com/codi2/codi2/internal/repo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func gitIn(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "git %v: %s", args, out)
}

// newRepo makes a repository with one commit and a src directory.
func newRepo(t *testing.T, content string) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	dir := t.TempDir()
	gitIn(t, dir, "init", "-q")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "src", "y"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "src", "x"), []byte(content), 0o644))
	gitIn(t, dir, "add", ".")
	gitIn(t, dir, "commit", "-q", "-m", "first")
	return dir
}

func TestFind_ProjectSharedByClonesAndWorktrees(t *testing.T) {
	ctx := context.Background()
	dir := newRepo(t, "x")
	r, err := repo.Find(ctx, filepath.Join(dir, "src"))
	require.NoError(t, err)
	real, _ := filepath.EvalSymlinks(dir)
	assert.Equal(t, real, r.Root)
	assert.Regexp(t, `^git-[0-9a-f]{12}$`, r.Project)

	clone := filepath.Join(t.TempDir(), "other-name")
	gitIn(t, dir, "clone", "-q", dir, clone)
	rc, err := repo.Find(ctx, clone)
	require.NoError(t, err)
	assert.Equal(t, r.Project, rc.Project, "a clone shares the project")
	wt := filepath.Join(t.TempDir(), "wt")
	gitIn(t, dir, "worktree", "add", "-q", wt)
	rw, err := repo.Find(ctx, wt)
	require.NoError(t, err)
	assert.Equal(t, r.Project, rw.Project, "a worktree shares the project")

	// An unrelated repository in a directory of the same name does not.
	other := newRepo(t, "another project's first file")
	ro, err := repo.Find(ctx, other)
	require.NoError(t, err)
	assert.NotEqual(t, r.Project, ro.Project)

	_, err = repo.Find(ctx, t.TempDir())
	assert.ErrorIs(t, err, repo.ErrNotRepo)
	empty := t.TempDir()
	gitIn(t, empty, "init", "-q")
	_, err = repo.Find(ctx, empty)
	assert.ErrorIs(t, err, repo.ErrNoCommits)
}

// Merging an unrelated, older history into a clone keeps its project (a
// breaker's input: the oldest root commit by date moved the clone to
// another project, out of its reservations).
func TestFind_ProjectStableAcrossMergedHistories(t *testing.T) {
	ctx := context.Background()
	dir := newRepo(t, "x")
	r, err := repo.Find(ctx, dir)
	require.NoError(t, err)
	old := t.TempDir()
	gitIn(t, old, "init", "-q")
	require.NoError(t, os.WriteFile(filepath.Join(old, "vendored"), []byte("v"), 0o644))
	gitIn(t, old, "add", ".")
	cmd := exec.Command("git", "commit", "-q", "-m", "old", "--date", "2000-01-01T00:00:00Z")
	cmd.Dir = old
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t",
		"GIT_COMMITTER_DATE=2000-01-01T00:00:00Z")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	clone := filepath.Join(t.TempDir(), "clone")
	gitIn(t, dir, "clone", "-q", dir, clone)
	gitIn(t, clone, "fetch", "-q", old, "HEAD")
	gitIn(t, clone, "merge", "-q", "--allow-unrelated-histories", "-m", "vendor", "FETCH_HEAD")
	rc, err := repo.Find(ctx, clone)
	require.NoError(t, err)
	assert.Equal(t, r.Project, rc.Project)
}

func TestRepo_Pattern(t *testing.T) {
	dir := newRepo(t, "x")
	r, err := repo.Find(context.Background(), dir)
	require.NoError(t, err)
	src := filepath.Join(dir, "src")
	tests := []struct {
		cwd, in, want string
		wantErr       error
	}{
		{dir, "./src/x", "src/x", nil},
		{dir, "src//x", "src/x", nil},
		{dir, "src/y/../x", "src/x", nil},
		{dir, filepath.Join(dir, "src", "x"), "src/x", nil},
		{src, "x", "src/x", nil},
		{src, "../src/x", "src/x", nil},
		{src, "*.go", "src/*.go", nil},
		{dir, "src/**/*.go", "src/**/*.go", nil},
		{dir, "src/", "src/**", nil},
		{dir, ".", "**", nil},
		{dir, "../elsewhere", "", repo.ErrOutside},
		{src, "../../x", "", repo.ErrOutside},
		{dir, "/etc/passwd", "", repo.ErrOutside},
		{dir, "", "", pathglob.ErrBadPattern},
		{dir, "src/[x", "", nil},
		// An existing directory means everything under it, however typed
		// (a breaker's input: "src" was reserved as the literal path
		// "src", covering none of its files).
		{dir, "src", "src/**", nil},
		{dir, "./src", "src/**", nil},
		{dir, "src/.", "src/**", nil},
		{src, ".", "src/**", nil},
		{dir, filepath.Join(dir, "src"), "src/**", nil},
		{dir, "src/y", "src/y/**", nil},
		{dir, "src/new/", "src/new/**", nil},
		// An existing file is that file, wildcard characters and all.
		{dir, "app/[id]/page.tsx", `app/\[id]/page.tsx`, nil},
		{dir, "app/[id]/*.tsx", `app/[id]/*.tsx`, nil},
	}
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "app", "[id]"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "app", "[id]", "page.tsx"), nil, 0o644))
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := r.Pattern(tt.cwd, tt.in)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			if tt.want != "" {
				assert.Equal(t, tt.want, got)
			}
		})
	}
	// Readings: Pattern's first, then what the same spelling reads as when
	// the tree is otherwise.
	for in, want := range map[string][]string{
		"app/[id]/page.tsx": {`app/\[id]/page.tsx`, "app/[id]/page.tsx", "app/[id]/page.tsx/**", `app/\[id]/page.tsx/**`},
		"new/[x]":           {"new/[x]", "new/[x]/**", `new/\[x]`, `new/\[x]/**`},
		"src":               {"src/**", "src"},
		"later":             {"later", "later/**"},
		".":                 {"**"},
	} {
		got, err := r.Readings(dir, in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	_, err = r.Readings(dir, "../x")
	require.ErrorIs(t, err, repo.ErrOutside)

	// Paths are paths: no wildcard is read, the file is matched as named.
	for in, want := range map[string]string{"app/[id]/page.tsx": "app/[id]/page.tsx", "./src//x": "src/x", filepath.Join(src, "x"): "src/x"} {
		got, err := r.Path(dir, in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
		pat, err := r.Pattern(dir, in)
		require.NoError(t, err)
		assert.True(t, mustMatch(t, pat, got), "the file's own pattern matches its path: %s", in)
	}
	_, err = r.Path(dir, ".")
	require.ErrorIs(t, err, pathglob.ErrBadPattern)
	_, err = r.Path(dir, "/etc/passwd")
	require.ErrorIs(t, err, repo.ErrOutside)
	// A symlink out of the repository says where it leads.
	require.NoError(t, os.Symlink("/etc/hostname", filepath.Join(dir, "hostlink")))
	_, err = r.Pattern(dir, "hostlink")
	require.ErrorIs(t, err, repo.ErrOutside)
	assert.Contains(t, err.Error(), "which resolves to /etc/hostname")

	// Through a symlinked directory: the same pattern.
	link := filepath.Join(t.TempDir(), "link")
	require.NoError(t, os.Symlink(dir, link))
	got, err := r.Pattern(link, "src/x")
	require.NoError(t, err)
	assert.Equal(t, "src/x", got)
}

func mustMatch(t *testing.T, pattern, path string) bool {
	t.Helper()
	p, err := pathglob.Compile(pattern)
	require.NoError(t, err)
	return p.Match(path)
}
