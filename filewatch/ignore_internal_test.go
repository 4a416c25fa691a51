package filewatch

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/codi2/codi2/internal/gittest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The watcher skips what git ignores, judged as git judges it: each path
// of a tree of .gitignore files is asked of `git check-ignore` and of the
// ignorer. The cases are a breaker's inputs that the old matcher
// (sabhiram/go-gitignore, each .gitignore on its own, the first match
// winning) got wrong: a deeper file's negation (sub/drop2.log), a
// pattern with a slash in the middle anchored to its file's directory
// (gi/foo/bar, not gi/sub/foo/bar), ? in a name (abc), a directory
// re-included (x.tmp/in); and the rules around them.
func TestIgnorer_AgreesWithGit(t *testing.T) {
	root := gittest.Init(t)
	files := map[string]string{
		".gitignore":        "*.log\na?c\n*.tmp\n!*.tmp/\nbuild/\n!build/keep.txt\n/rooted.txt\ndeep/**/gen\n# a comment\n\n  \ntrailing.txt   \nweird\\ name\n",
		"sub/.gitignore":    "!drop2.log\nlocal.txt\n",
		"gi/.gitignore":     "foo/bar\n/top.txt\n",
		"gi/sub/.gitignore": "!*.log\n",
		"crlf/.gitignore":   "win.txt\r\n",
	}
	paths := []string{
		"a.log", "sub/drop2.log", "sub/drop3.log", "sub/local.txt", "local.txt",
		"gi/foo/bar", "gi/sub/foo/bar", "foo/bar", "gi/top.txt", "gi/sub/top.txt", "gi/sub/x.log", "gi/x.log",
		"abc", "ac", "abbc", "x/abc",
		"x.tmp/in", "y.tmp", "build/keep.txt", "build/other.txt", "src/build/z",
		"rooted.txt", "sub/rooted.txt", "deep/gen", "deep/a/b/gen", "deep/c/gen/d",
		"trailing.txt", "weird name", "crlf/win.txt", "main.go", "sub/main.go",
	}
	for p, c := range files {
		write(t, filepath.Join(root, p), c)
	}
	for _, p := range paths {
		write(t, filepath.Join(root, p), "x")
	}
	ig := newIgnorer(root)
	for _, d := range []string{"", "sub", "gi", "gi/sub", "crlf"} {
		ig.load(d)
	}
	for _, p := range paths {
		_, err := gittest.Try(root, nil, "check-ignore", "-q", "--no-index", p)
		git := err == nil
		assert.Equal(t, git, ig.ignored(p, false), "%s: git check-ignore says ignored=%v", p, git)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(data), 0o644))
}
