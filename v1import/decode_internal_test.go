package v1import

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/v1sim"
)

// FuzzDecode: Decode, with its one-pass path, answers what encoding/json
// answers, for any input.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"ts":"2026-01-01T00:00:00Z","action":"TASK_ASSIGN","from":"o","to":"agent-1","task":"ADR-001","writer":0,"n":0}`,
		`{"ts":"x","action":"STATUS_UPDATE","task":"ADR-002","status":"done","n":-1.5e3}`,
		`{"Task":"a"}`, `{"TASK":"a","task":"b"}`, `{"task":"a","task":"b"}`, `{"task":1,"task":"b"}`, `{"task":"b","task":1}`,
		"{\"\u017ftatus\":\"x\"}", "{\"tas\u212a\":\"x\"}", `{"task":"a\"b"}`, `{"task":"\u0041"}`, "{\"task\":\"\xff\"}",
		"{\"task\":\"a\tb\"}", `{"task":"é"}`, `{}`, ` { } `, `{"a":{"task":"x"}}`, `{"a":[1,2]}`, `{"a":01}`, `{"a":1.}`,
		`{"a":-}`, `{"a":1e}`, `{"a":1e+5}`, `{"a":truex}`, `{"a":nul}`, `{"a":1,}`, `{,}`, `{"a" 1}`, `{"a":1} x`,
		`[1]`, `"s"`, ``, `{`, `{"a":"b"`, `{"a":"b"}}`, `{"a":`, `{"a": `, `{"a":t`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, ok := Decode(raw)
		we, wok := decodeJSON(raw)
		require.Equal(t, wok, ok, "ok of %q", raw)
		require.Equal(t, we, e, "event of %q", raw)
	})
}

// The one-pass path takes every event Split finds in a v1 log written by
// 5 buffered writers (so the import does not fall back to encoding/json
// for them), and only gives up on what it must.
func TestDecodeFast_TakesV1Lines(t *testing.T) {
	dir := t.TempDir()
	res, err := v1sim.RunWrites(context.Background(), v1sim.Config{Dir: dir, Writers: 5, EventsPerWriter: 400, Mode: v1sim.Buffered})
	require.NoError(t, err)
	data, err := os.ReadFile(filepath.Join(res.Path))
	require.NoError(t, err)
	n := 0
	for _, line := range splitLines(data) {
		for _, p := range Split(line) {
			if !p.Event {
				continue
			}
			e, handled := decodeFast(p.Raw)
			require.True(t, handled, "%s", p.Raw)
			want, ok := decodeJSON(p.Raw)
			require.True(t, ok)
			assert.Equal(t, want, e)
			n++
		}
	}
	assert.Greater(t, n, 1000, "events found")
	for _, s := range []string{`{"Task":"a"}`, `{"task":"a\"b"}`, `{"a":{}}`, "{\"\u017ftatus\":\"x\"}", `{"a":1} x`} {
		_, handled := decodeFast([]byte(s))
		assert.False(t, handled, s)
	}
}

func splitLines(data []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		i := 0
		for i < len(data) && data[i] != '\n' {
			i++
		}
		if i > 0 {
			out = append(out, data[:i])
		}
		if i < len(data) {
			i++
		}
		data = data[i:]
	}
	return out
}

// FuzzSplitScan: isObject and objectPrefix answer what encoding/json
// answers (json.Valid; a json.Decoder's first value), for any input.
// (isObject used to trim Unicode white space first, so "{}\f" was an
// event that Decode then refused; now it is the event "{}" and a blank.)
func FuzzSplitScan(f *testing.F) {
	for _, s := range []string{
		`{"a":1}`, ` {"a":1} `, `{"a":1}{"b":2}`, `{"a":1}tail"}`, `{"a":`, `{}`, `[]`, `"s"`, ``, ` `, "{\"a\":\"\xff\"}",
		`{"a":[1,{"b":null}]}x`, `{"a":01}`, "\t{}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// JSON's white space only (RFC 8259, section 2): a form feed or
		// U+00A0 after the object makes it not one.
		t2 := bytes.TrimLeft(b, " \t\r\n")
		require.Equal(t, len(t2) > 1 && t2[0] == '{' && json.Valid(b), isObject(b), "isObject(%q)", b)
		want := 0
		if len(b) > 0 && b[0] == '{' {
			dec := json.NewDecoder(bytes.NewReader(b))
			var raw json.RawMessage
			if dec.Decode(&raw) == nil {
				want = int(dec.InputOffset())
			}
		}
		require.Equal(t, want, objectPrefix(b), "objectPrefix(%q)", b)
	})
}
