package filewatch

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	gitignore "github.com/sabhiram/go-gitignore"
)

// ignorer holds the .gitignore files of the tree, one per directory that
// has one, keyed by the directory's path relative to the root ("" for the
// root). Used by the watcher's loop only: not safe for concurrent use.
type ignorer struct {
	root  string
	files map[string]*gitignore.GitIgnore
	// dataDirs caches, per directory below the root, whether it is a
	// codi2 data directory (isDataDir); forgetDataDir drops an answer
	// when the directory's content changes.
	dataDirs map[string]bool
}

func newIgnorer(root string) *ignorer {
	return &ignorer{root: root, files: map[string]*gitignore.GitIgnore{}, dataDirs: map[string]bool{}}
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
// when it is gone.
func (ig *ignorer) load(dir string) {
	gi, err := gitignore.CompileIgnoreFile(filepath.Join(ig.root, filepath.FromSlash(dir), ".gitignore"))
	if err != nil {
		delete(ig.files, dir)
		return
	}
	ig.files[dir] = gi
}

// ignored reports whether rel (relative to the root, slashes) is skipped:
// anything in .git, a codi2 data directory and anything in one
// (isDataDir), or what the .gitignore of an enclosing directory matches
// (rel taken relative to that directory; dir says rel is a directory,
// which patterns ending in / match).
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
	if dir {
		rel += "/"
	}
	for d := path.Dir(strings.TrimSuffix(rel, "/")); ; d = path.Dir(d) {
		key := d
		if d == "." {
			key = ""
		}
		if gi := ig.files[key]; gi != nil {
			sub := rel
			if key != "" {
				sub = strings.TrimPrefix(rel, key+"/")
			}
			if gi.MatchesPath(sub) {
				return true
			}
		}
		if d == "." || d == "/" {
			return false
		}
	}
}
