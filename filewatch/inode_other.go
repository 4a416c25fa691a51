//go:build !unix

package filewatch

import "io/fs"

// inodeOf is 0: moves are recorded as a rename of the old path and a
// create of the new one.
func inodeOf(fs.FileInfo) uint64 { return 0 }
