package main

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{"0", 0, ""},
		{"1048576", 1 << 20, ""},
		{"512MiB", 512 << 20, ""},
		{"512mib", 512 << 20, ""},
		{"1.5 GiB", 3 << 29, ""},
		{" 2GB ", 2e9, ""},
		{"4k", 4096, ""},
		{"10G", 10 << 30, ""},
		{"1TB", 1e12, ""},
		{"100B", 100, ""},
		{"", 0, "want a number"},
		{"GiB", 0, "want a number"},
		{"-1", 0, "want a number"},
		{"1PiB", 0, "want a number"},
		{"1..2", 0, "invalid syntax"},
		{"9000000TiB", 0, "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseBytes(tt.in)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	var b byteSize
	assert.Equal(t, "0", b.String())
	require.NoError(t, b.Set("8MiB"))
	assert.Equal(t, "8 MiB", b.String())
	require.Error(t, b.Set("lots"))
}

// FuzzParseBytes: no input panics; a parsed size is never negative, and a
// plain number of bytes reads back as itself.
func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"0", "512MiB", "1.5 GiB", "2GB", "1e3", "..", "9999999999999999999", "18446744073709551615B", "NaN", "Inf"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseBytes(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("%q: negative %d", s, n)
		}
		back, err := parseBytes(strconv.FormatInt(n, 10))
		if err != nil || back != n {
			t.Fatalf("%q: %d reads back as %d, %v", s, n, back, err)
		}
	})
}
