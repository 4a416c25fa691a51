// Package repo finds the git repository an agent works in and turns the
// paths and globs it names into patterns relative to the repository root,
// so that every worktree and clone of one repository shares file
// reservations, and names the project those reservations belong to.
package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/codi2/codi2/internal/pathglob"
)

// Errors of Find and Repo.Pattern.
var (
	// ErrNotRepo: the directory is not inside a git work tree (or git is
	// not installed).
	ErrNotRepo = errors.New("repo: not a git repository")
	// ErrNoCommits: the repository has no commit yet, so it has no
	// identity to derive a project name from.
	ErrNoCommits = errors.New("repo: no commits yet")
	// ErrOutside: a path or pattern outside the repository.
	ErrOutside = errors.New("repo: outside the repository")
)

// gitTimeout bounds each git command.
const gitTimeout = 5 * time.Second

// Repo is a git work tree: its root (symlinks resolved) and the project
// name derived from the repository's identity. A plain value.
type Repo struct {
	// Root is the work tree's top-level directory.
	Root string
	// Project is "git-" and the first 12 hex digits of the repository's
	// first commit (the oldest root commit when there are several): the
	// same in every clone and worktree, different for an unrelated
	// repository whatever its directory is called.
	Project string
}

// Find returns the repository dir is in. In a repository without commits
// it fails with ErrNoCommits and returns a Repo whose Root is set and whose
// Project is empty.
func Find(ctx context.Context, dir string) (Repo, error) {
	top, err := git(ctx, dir, "rev-parse", "--show-toplevel")
	if err != nil {
		return Repo{}, fmt.Errorf("%w: %s: %v", ErrNotRepo, dir, err)
	}
	root, err := filepath.EvalSymlinks(top)
	if err != nil {
		return Repo{}, fmt.Errorf("%w: %s: %v", ErrNotRepo, top, err)
	}
	// The root commit of HEAD's first-parent chain: merging another
	// history (a subtree, a vendored project, whatever its dates) brings
	// its roots in as second parents, so the project stays the same.
	roots, err := git(ctx, root, "rev-list", "--max-parents=0", "--first-parent", "HEAD")
	if err != nil || roots == "" {
		// The root is known, the project is not: callers that need only
		// paths relative to the root may go on with it.
		return Repo{Root: root}, fmt.Errorf("%w in %s: pass a project name", ErrNoCommits, root)
	}
	first := strings.Fields(roots)
	return Repo{Root: root, Project: "git-" + first[len(first)-1][:12]}, nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	out, err := Git(ctx, dir, args...)
	return strings.TrimSpace(out), err
}

// Git runs git with args in dir (bounded by a few seconds) and returns its
// standard output as it is; a failure is an error holding git's own
// message. Safe for concurrent use.
func Git(ctx context.Context, dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return "", errors.New(msg)
		}
		return "", err
	}
	return string(out), nil
}

// Pattern turns a path or glob as an agent typed it in directory cwd
// (relative to cwd, or absolute) into a normalized pattern relative to the
// root: "./src/x", "src//x", "src/y/../x" and the absolute path of the same
// file are one pattern. What names an existing directory means the
// directory and everything under it ("src" and "src/" are "src/**"; "." at
// the root is "**"); what names an existing file or directory is taken
// literally even when its name holds wildcard characters
// ("app/[id]/page.tsx" is reserved as that file, escaped). A pattern
// outside the root fails with ErrOutside; a malformed glob with
// pathglob.ErrBadPattern.
func (r Repo) Pattern(cwd, p string) (string, error) {
	rel, st, err := r.rel(cwd, p)
	if err != nil {
		return "", err
	}
	if st != nil {
		if pathglob.HasMeta(rel) {
			rel = pathglob.QuoteMeta(rel)
		}
		if st.IsDir() && rel != "." {
			rel += "/"
		}
	} else if strings.HasSuffix(p, "/") && rel != "." {
		rel += "/"
	}
	return pathglob.Normalize(rel)
}

// Readings is Pattern's pattern of p, then the other patterns p reads as
// when what exists changes: a name with wildcard characters read as a glob
// or as that file, a name read as a file or as a directory (and
// everything under it). A reservation made of p when the tree was
// otherwise has one of them: unreserve of the same spelling finds it. The
// patterns are distinct; it fails as Pattern does.
func (r Repo) Readings(cwd, p string) ([]string, error) {
	first, err := r.Pattern(cwd, p)
	if err != nil {
		return nil, err
	}
	rel, _, err := r.rel(cwd, p)
	if err != nil {
		return nil, err
	}
	out := []string{first}
	forms := []string{rel}
	if pathglob.HasMeta(rel) {
		forms = append(forms, pathglob.QuoteMeta(rel))
	}
	for _, f := range forms {
		for _, alt := range []string{f, f + "/"} {
			if rel == "." {
				alt = f
			}
			n, err := pathglob.Normalize(alt)
			if err == nil && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out, nil
}

// Path turns a file path as an agent typed it in directory cwd into the
// cleaned path relative to the root, with no wildcards read in it: the
// form reservations are matched against. It fails with ErrOutside for a
// path outside the root.
func (r Repo) Path(cwd, p string) (string, error) {
	rel, _, err := r.rel(cwd, p)
	if err != nil {
		return "", err
	}
	if rel == "." {
		return "", fmt.Errorf("%w: %s is the repository root, not a file", pathglob.ErrBadPattern, p)
	}
	return rel, nil
}

// rel is p relative to the root (slash-separated, cleaned), and the file
// it names when that exists.
func (r Repo) rel(cwd, p string) (string, os.FileInfo, error) {
	if p == "" {
		return "", nil, fmt.Errorf("%w: empty", pathglob.ErrBadPattern)
	}
	abs := p
	if !filepath.IsAbs(p) {
		abs = filepath.Join(cwd, p)
	}
	abs = filepath.Clean(abs)
	st, _ := os.Stat(abs)
	resolved := resolveExisting(abs)
	rel, err := filepath.Rel(r.Root, resolved)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		if resolved != abs {
			return "", nil, fmt.Errorf("%w: %s (which resolves to %s) is not under %s", ErrOutside, p, resolved, r.Root)
		}
		return "", nil, fmt.Errorf("%w: %s is not under %s", ErrOutside, p, r.Root)
	}
	return filepath.ToSlash(rel), st, nil
}

// resolveExisting resolves symlinks in the longest existing prefix of an
// absolute path, so that a path through a symlinked directory (macOS's
// /tmp, a worktree reached by a link) compares with the resolved root. The
// rest, globs included, is kept as written.
func resolveExisting(p string) string {
	rest := ""
	for cur := p; ; {
		if real, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(real, rest)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}
