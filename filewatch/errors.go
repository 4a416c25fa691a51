package filewatch

import "errors"

// Errors of New and Run. They are wrapped with the directory or file they
// concern; test for them with errors.Is. Immutable, safe to share.
var (
	// ErrConfig: an invalid Config (no root, a directory outside the root,
	// a bad agent id, a negative bound).
	ErrConfig = errors.New("filewatch: invalid config")
	// ErrWatch: the kernel refused to watch the tree (too many watches:
	// raise /proc/sys/fs/inotify/max_user_watches).
	ErrWatch = errors.New("filewatch: cannot watch")
)
