package filewatch

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
)

// ignorer holds the .gitignore files of the tree, one per directory that
// has one, keyed by the directory's path relative to the root ("" for the
// root). Used by the watcher's loop only: not safe for concurrent use.
type ignorer struct {
	root  string
	files map[string][]gitignore.Pattern
	// dataDirs caches, per directory below the root, whether it is a
	// codi2 data directory (isDataDir); forgetDataDir drops an answer
	// when the directory's content changes.
	dataDirs map[string]bool
}

func newIgnorer(root string) *ignorer {
	return &ignorer{root: root, files: map[string][]gitignore.Pattern{}, dataDirs: map[string]bool{}}
}

// dataDirLock is the lock file a codi2 server keeps in its data directory
// (internal/server.LockFile), and dataDirContent the names of which a data
// directory holds at least one beside it: the embedded JetStream store,
// and the stores of either engine (internal/server's layout).
const dataDirLock = "LOCK"

var dataDirContent = []string{"jetstream", "state.db", "audit.db", "store.db", "pebble"}

// isDataDir reports whether dir (relative to the root, slashes; not the
// root itself) is a codi2 server's data directory: every commit there
// writes its files, so recording them would record the recording for
// ever. The answer is cached until forgetDataDir.
func (ig *ignorer) isDataDir(dir string) bool {
	if is, ok := ig.dataDirs[dir]; ok {
		return is
	}
	abs := filepath.Join(ig.root, filepath.FromSlash(dir))
	is := false
	if fi, err := os.Lstat(filepath.Join(abs, dataDirLock)); err == nil && fi.Mode().IsRegular() {
		for _, name := range dataDirContent {
			if _, err := os.Lstat(filepath.Join(abs, name)); err == nil {
				is = true
				break
			}
		}
	}
	ig.dataDirs[dir] = is
	return is
}

// forgetDataDir drops the cached answer for rel's directory when rel is
// one of the names that make a data directory (a server started there
// since it was asked).
func (ig *ignorer) forgetDataDir(rel string) {
	base := path.Base(rel)
	if base != dataDirLock && !slices.Contains(dataDirContent, base) {
		return
	}
	d := path.Dir(rel)
	if d == "." {
		d = ""
	}
	delete(ig.dataDirs, d)
}

// load (re)reads dir's .gitignore (dir relative to the root), or forgets it
// when it is gone. Its patterns are parsed as git parses them (go-git's
// plumbing/format/gitignore: gitignore(5)), scoped to dir.
func (ig *ignorer) load(dir string) {
	data, err := os.ReadFile(filepath.Join(ig.root, filepath.FromSlash(dir), ".gitignore"))
	if err != nil {
		delete(ig.files, dir)
		return
	}
	var domain []string
	if dir != "" {
		domain = strings.Split(dir, "/")
	}
	var ps []gitignore.Pattern
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		ps = append(ps, gitignore.ParsePattern(line, domain))
	}
	ig.files[dir] = ps
}

// ignored reports whether rel (relative to the root, slashes) is skipped:
// anything in .git, a codi2 data directory and anything in one
// (isDataDir), or what git ignores (gitignore(5)): the patterns of the
// .gitignore files from the root down to rel's directory, the last one
// that matches deciding (a deeper file's negation overrides), and nothing
// below an ignored directory re-included. dir says rel is a directory,
// which patterns ending in / match.
func (ig *ignorer) ignored(rel string, dir bool) bool {
	if rel == ".git" || strings.HasPrefix(rel, ".git/") || strings.Contains(rel, "/.git/") || strings.HasSuffix(rel, "/.git") {
		return true
	}
	if dir && rel != "" && ig.isDataDir(rel) {
		return true
	}
	for d := path.Dir(rel); d != "." && d != "/" && d != ""; d = path.Dir(d) {
		if ig.isDataDir(d) {
			return true
		}
	}
	if rel == "" {
		return false
	}
	parts := strings.Split(rel, "/")
	// dirs[i] is the directory holding parts[i], a prefix of rel ("" for
	// the root): the key of its .gitignore, without joining the parts
	// again for every pattern file on every event.
	dirs := make([]string, len(parts))
	for i, n := 0, -1; i < len(parts); i++ {
		if i > 0 {
			dirs[i] = rel[:n]
		}
		n += len(parts[i]) + 1
	}
	// Each enclosing directory first: git does not look into one it
	// ignores, so no pattern can re-include what is below it.
	for i := 1; i <= len(parts); i++ {
		if ig.matches(parts[:i], dirs[:i], i < len(parts) || dir) {
			return true
		}
	}
	return false
}

// matches reports whether the .gitignore patterns that apply to the path
// parts (those of the files in its enclosing directories dirs, dirs[i]
// holding parts[i]) exclude it: the last pattern that matches decides.
func (ig *ignorer) matches(parts, dirs []string, dir bool) bool {
	for i := len(parts) - 1; i >= 0; i-- {
		ps := ig.files[dirs[i]]
		for j := len(ps) - 1; j >= 0; j-- {
			switch ps[j].Match(parts, dir) {
			case gitignore.Exclude:
				return true
			case gitignore.Include:
				return false
			}
		}
	}
	return false
}
