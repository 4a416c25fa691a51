package cli

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/codi2/codi2/filewatch"
)

// A rename's text names where the file went (a new user's input: only
// --json had it); control characters in names stay escaped.
func TestChangeText(t *testing.T) {
	size := int64(2)
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		c    filewatch.Change
		want string
	}{
		{filewatch.Change{Op: "rename", Path: "m1.txt", To: "m2.txt", Size: &size, SHA256: "0123456789abcdef"}, "rename m1.txt -> m2.txt (2 bytes, sha256 0123456789ab)"},
		{filewatch.Change{Op: "remove", Path: "a\nb"}, `remove a\nb`},
		{filewatch.Change{Op: filewatch.OpDropped, Dropped: 3, First: &at, Last: &at}, "dropped 3 changes (2026-11-30T12:00:00Z to 2026-11-30T12:00:00Z) while the server was away"},
	} {
		assert.Equal(t, tt.want, changeText(tt.c))
	}
}
