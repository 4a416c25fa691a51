//go:build unix

package filewatch

import (
	"io/fs"
	"syscall"
)

// inodeOf is fi's inode number, or 0 when the platform does not say.
func inodeOf(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}
