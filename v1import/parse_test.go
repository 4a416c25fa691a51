package v1import_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/codi2/codi2/v1import"
	"github.com/stretchr/testify/assert"
)

func TestSplit(t *testing.T) {
	a := `{"ts":"2026-01-01T00:00:00Z","action":"TASK_ASSIGN","from":"o","to":"agent-1","task":"ADR-001"}`
	b := `{"ts":"2026-01-01T00:00:01Z","action":"STATUS_UPDATE","from":"agent-1","task":"ADR-001","status":"done"}`
	type piece struct {
		off   int
		raw   string
		event bool
	}
	for _, tc := range []struct {
		name string
		line string
		want []piece
	}{
		{"whole", a, []piece{{0, a, true}}},
		{"blank", "  \r", nil},
		{"form feed after an object (not JSON white space)", a + "\f", []piece{{0, a, true}}},
		{"two joined", a + b, []piece{{0, a, true}, {len(a), b, true}}},
		{"torn head then a whole line", a[:40] + b, []piece{{0, a[:40], false}, {40, b, true}}},
		{"whole then a torn tail", a + b[50:], []piece{{0, a, true}, {len(a), b[50:], false}}},
		{"head, tail and a whole line", a[:30] + b[60:] + a, []piece{{0, a[:30] + b[60:], false}, {30 + len(b) - 60, a, true}}},
		{"not JSON", "hello\xff world", []piece{{0, "hello\xff world", false}}},
		{"JSON but not an object", `[1,2]`, []piece{{0, `[1,2]`, false}}},
		{"non-UTF-8 inside an event", `{"action":"X","task":"a` + "\xff" + `"}`, []piece{{0, `{"action":"X","task":"a` + "\xff" + `"}`, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []piece
			for _, p := range v1import.Split([]byte(tc.line)) {
				got = append(got, piece{p.Off, string(p.Raw), p.Event})
			}
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestDecode(t *testing.T) {
	e, ok := v1import.Decode([]byte(`{"ts":"t","action":"STATUS_UPDATE","from":"a","to":7,"task":"T","status":"done","extra":[1]}`))
	assert.True(t, ok)
	assert.Equal(t, v1import.Event{TS: "t", Action: "STATUS_UPDATE", From: "a", Task: "T", Status: "done"}, e)
	_, ok = v1import.Decode([]byte(`[1]`))
	assert.False(t, ok)
}

// FuzzSplit: pieces are in order, do not overlap, cover every byte that is
// not blank, and an event piece is one JSON object.
func FuzzSplit(f *testing.F) {
	for _, s := range []string{
		`{"ts":"2026-01-01T00:00:00Z","action":"TASK_ASSIGN","from":"o","to":"agent-1","task":"ADR-001","writer":0,"n":0}`,
		`{"ts":"2026-01-01T00:00:00Z","acti{"ts":"x","action":"TASK_ACK","task":"ADR-002"}`,
		`{"a":1}{"b":2}`, `{"a":1}tail"}`, "\xff\xfe{\"a\":", `{"a":"\ud800"}`, "", " ", `{"`, `{"{"{"{"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		pieces := v1import.Split(line)
		next := 0
		for _, p := range pieces {
			if p.Off < next || p.Off+len(p.Raw) > len(line) {
				t.Fatalf("piece at %d (%d bytes) overlaps or overruns (next %d, line %d)", p.Off, len(p.Raw), next, len(line))
			}
			if len(bytes.TrimSpace(line[next:p.Off])) != 0 {
				t.Fatalf("bytes %d..%d are in no piece: %q", next, p.Off, line[next:p.Off])
			}
			if !bytes.Equal(p.Raw, line[p.Off:p.Off+len(p.Raw)]) {
				t.Fatalf("piece at %d is not the line's bytes", p.Off)
			}
			if p.Event {
				var v map[string]any
				if err := json.Unmarshal(p.Raw, &v); err != nil {
					t.Fatalf("event piece %q is not a JSON object: %v", p.Raw, err)
				}
				if _, ok := v1import.Decode(p.Raw); !ok {
					t.Fatalf("event piece %q does not decode", p.Raw)
				}
			}
			next = p.Off + len(p.Raw)
		}
		if len(bytes.TrimSpace(line[next:])) != 0 {
			t.Fatalf("the line's end %q is in no piece", line[next:])
		}
	})
}
