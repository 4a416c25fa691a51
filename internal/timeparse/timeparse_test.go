package timeparse

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{"now", now, false},
		{" now ", now, false},
		{"2026-11-26T21:00:00Z", time.Date(2026, 11, 26, 21, 0, 0, 0, time.UTC), false},
		{"2026-11-26T22:00:00.5+01:00", time.Date(2026, 11, 26, 21, 0, 0, 5e8, time.UTC), false},
		{"9999-12-31T23:59:59Z", time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), false},
		{"0001-01-01T00:00:00Z", time.Time{}, false},
		{"15m", now.Add(-15 * time.Minute), false},
		{"-15m", now.Add(-15 * time.Minute), false},
		{"-1h", now.Add(-time.Hour), false},
		{"+1h", now.Add(time.Hour), false},
		{"1h30m", now.Add(-90 * time.Minute), false},
		{"1.5h", now.Add(-90 * time.Minute), false},
		{"2d", now.Add(-48 * time.Hour), false},
		{"+2d", now.Add(48 * time.Hour), false},
		{"0s", now, false},
		{"", time.Time{}, true},
		{"yesterday", time.Time{}, true},
		{"--1h", time.Time{}, true},
		{"+-1h", time.Time{}, true},
		{"-", time.Time{}, true},
		{"1x", time.Time{}, true},
		{"d", time.Time{}, true},
		{"-2.5d", time.Time{}, true},
		{"99999d", time.Time{}, true},
		{"36500d", now.Add(-36500 * 24 * time.Hour), false},
		{"36501d", time.Time{}, true},
		{"876001h", time.Time{}, true},
		{"2026-11-26", time.Time{}, true},
		{"2026-11-26 21:00:00", time.Time{}, true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in, now)
		if tt.wantErr {
			require.ErrorIs(t, err, ErrBadTime, tt.in)
			assert.Contains(t, err.Error(), "RFC 3339")
			continue
		}
		require.NoError(t, err, tt.in)
		assert.True(t, tt.want.Equal(got), "%q: got %v, want %v", tt.in, got, tt.want)
	}
}

// FuzzParse checks that Parse never panics, that an accepted relative form
// lands within a hundred years of now, and that an RFC 3339 result reads
// back to itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"now", "-1h", "15m", "+2d", "2026-11-26T21:00:00Z", "9999-12-31T23:59:59Z", "1.5h", "--1h", "1e9h", "-9223372036854775808ns", "2562047h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Parse(s, now)
		if err != nil {
			return
		}
		if _, rerr := time.Parse(time.RFC3339Nano, strings.TrimSpace(s)); rerr == nil {
			back, err := time.Parse(time.RFC3339Nano, got.Format(time.RFC3339Nano))
			if err != nil || !back.Equal(got) {
				t.Fatalf("%q: %v does not read back: %v", s, got, err)
			}
			return
		}
		if d := got.Sub(now); d < -101*365*24*time.Hour || d > 101*365*24*time.Hour {
			t.Fatalf("%q: %v is %v from now", s, got, d)
		}
	})
}
