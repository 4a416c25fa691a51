package hooks

import "errors"

// Errors of the hooks. They are wrapped with the path or command they are
// about; test for them with errors.Is. Immutable, safe to share.
var (
	// ErrNotManaged: the file a hook is about is not in a repository codi2
	// can name (not a git work tree, or one without commits and no
	// --project), so no reservation applies to it.
	ErrNotManaged = errors.New("hooks: not in a repository codi2 manages")
	// ErrCommitRefused: the commit changes files another agent reserved
	// exclusively (the git pre-commit hook).
	ErrCommitRefused = errors.New("commit refused: files reserved by another agent")
)
