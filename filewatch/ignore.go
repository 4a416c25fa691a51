package filewatch

import (
	"path"
	"path/filepath"
	"strings"

	gitignore "github.com/sabhiram/go-gitignore"
)

// ignorer holds the .gitignore files of the tree, one per directory that
// has one, keyed by the directory's path relative to the root ("" for the
// root). Used by the watcher's loop only: not safe for concurrent use.
type ignorer struct {
	root  string
	files map[string]*gitignore.GitIgnore
}

func newIgnorer(root string) *ignorer {
	return &ignorer{root: root, files: map[string]*gitignore.GitIgnore{}}
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
// anything in .git, or what the .gitignore of an enclosing directory
// matches (rel taken relative to that directory; dir says rel is a
// directory, which patterns ending in / match).
func (ig *ignorer) ignored(rel string, dir bool) bool {
	if rel == ".git" || strings.HasPrefix(rel, ".git/") || strings.Contains(rel, "/.git/") || strings.HasSuffix(rel, "/.git") {
		return true
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
