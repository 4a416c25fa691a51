package v1import

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// FuzzFileID: a file's id, once it has one, is the id of the file with
// anything appended (v1 only appends), and it is the hash of the first
// non-blank line's first 4 KiB; legacyIDs never fails on any bytes.
func FuzzFileID(f *testing.F) {
	for _, s := range []string{
		"", "\n", "\n\n\n", " \t\n{\"a\":1}\n", `{"action":"TASK_ASSIGN","task":"PH-0"}`, `{"a":1}` + "\n" + `{"b":2}`,
		"\r\n{\"a\":1}\r\n", strings.Repeat(" ", 5000) + "x\n", strings.Repeat("y", 5000), "\xff\xfe\n",
		"\xef\xbb\xbf{\"a\":1}\n", "\xef\xbb\xbf" + strings.Repeat(" ", 5000) + "x\n", "\xef\xbb\xbf\n{\"b\":1}\n", "\xef\xbb",
	} {
		f.Add([]byte(s), []byte("{\"more\":1}\n"))
	}
	f.Fuzz(func(t *testing.T, data, more []byte) {
		id, ok, err := FileID(bytes.NewReader(data))
		require.NoError(t, err)
		_, _, err = legacyIDs(bytes.NewReader(data), id)
		require.NoError(t, err)
		grown, gok, err := FileID(bytes.NewReader(append(bytes.Clone(data), more...)))
		require.NoError(t, err)
		if ok {
			require.True(t, gok, "%q grown by %q", data, more)
			require.Equal(t, id, grown, "%q grown by %q", data, more)
		}
		if !ok {
			return
		}
		// The reference: the first non-blank line, cut to 4 KiB, after a
		// byte-order mark at the start.
		for _, line := range bytes.SplitAfter(bytes.TrimPrefix(data, utf8BOM), []byte{'\n'}) {
			head := bytes.TrimSuffix(line, []byte{'\n'})
			head = head[:min(len(head), maxIDLine)]
			if len(bytes.TrimSpace(head)) > 0 {
				h := sha256.Sum256(head)
				require.Equal(t, hex.EncodeToString(h[:8]), id, "%q", data)
				return
			}
		}
		t.Fatalf("an id for %q, which has no non-blank line", data)
	})
}

// A copy saved with a byte-order mark has the file's id (a breaker's
// input: it got another id and was imported a second time).
func TestFileID_ByteOrderMark(t *testing.T) {
	log := `{"action":"TASK_ASSIGN","task":"CR1","to":"old"}` + "\n"
	id, ok, err := FileID(strings.NewReader(log))
	require.NoError(t, err)
	require.True(t, ok)
	bom, ok, err := FileID(strings.NewReader("\xef\xbb\xbf" + log))
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, id, bom)
	_, ok, err = FileID(strings.NewReader("\xef\xbb\xbf"))
	require.NoError(t, err)
	assert.False(t, ok, "a mark alone is no first line")
}

func TestLegacyIDs(t *testing.T) {
	hash := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:8]) }
	ids, blank, err := legacyIDs(strings.NewReader(`{"a":1}{"b":2}`+"\n"), hash(`{"a":1}{"b":2}`))
	require.NoError(t, err)
	assert.False(t, blank)
	assert.Equal(t, []string{hash(`{"a":1}{"b":2}` + "\n"), hash(`{"a":1}`)}, ids)
	ids, blank, err = legacyIDs(strings.NewReader("\n\n"), "")
	require.NoError(t, err)
	assert.True(t, blank)
	assert.Equal(t, []string{hash("\n")}, ids)
}
