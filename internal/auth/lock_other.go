//go:build !unix

package auth

import "os"

// locked runs fn; without flock, concurrent `codi2 agent` commands on one
// directory are not supported on this platform.
func (a *Authority) locked(fn func() error) error { return fn() }

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}
}
