package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRecord_Encode_Canonical(t *testing.T) {
	body := encodeBody("codi.audit.log.agent-1.file.write", "agent-1", "file", "m-1", []byte(` {"path": "README.md"} `))
	raw, hash := encodeRecord(1, 1_795_000_000_123_456_789, body, GenesisPrev)
	canonical := `{"seq":1,"time":"2026-11-18T11:06:40.123456789Z","subject":"codi.audit.log.agent-1.file.write",` +
		`"source":"agent-1","category":"file","msg_id":"m-1","data":{"path":"README.md"},"prev":"` + GenesisPrev + `"}`
	assert.Equal(t, canonical[:len(canonical)-1]+`,"hash":"`+hash+`"}`, string(raw))
	assert.Equal(t, chainHash(GenesisPrev, []byte(canonical)), hash)

	prev, got, ok, err := CheckRecordHash(raw)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, GenesisPrev, prev)
	assert.Equal(t, hash, got)

	r, err := ParseRecord(raw)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), r.Seq)
	assert.Equal(t, "m-1", r.MsgID)
	assert.Equal(t, int64(1_795_000_000_123_456_789), r.Time.UnixNano())
	seq, ok := recordSeq(raw)
	assert.True(t, ok)
	assert.Equal(t, uint64(1), seq)
	ts, ok := recordTime(raw)
	assert.True(t, ok)
	assert.Equal(t, r.Time.UnixNano(), ts)
}

func TestRecord_Parse_Errors(t *testing.T) {
	raw, _ := encodeRecord(3, 0, encodeBody("s", "a", "b", "", []byte("x")), GenesisPrev)
	tests := []struct {
		name string
		raw  string
	}{
		{name: "empty", raw: ""},
		{name: "no hash", raw: `{"seq":1}`},
		{name: "hash not last", raw: strings.Replace(string(raw), `"}`, `","x":1}`, 1)},
		{name: "not JSON inside", raw: strings.Replace(string(raw), `"source":"a"`, `"source":a`, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRecord([]byte(tt.raw))
			assert.ErrorIs(t, err, ErrBadRecord)
		})
	}
	_, ok := recordTime([]byte(`{"seq":1,"time":"bad"}`))
	assert.False(t, ok)
	_, ok = recordTime([]byte(`{"seq":1}`))
	assert.False(t, ok)
	for _, in := range []string{`{"seq":x,`, `{"seq":,`, `{"seq":0,`, `{"sq":1,`} {
		_, ok = recordSeq([]byte(in))
		assert.False(t, ok, in)
	}
	_, ok = recordTime([]byte(`{"seq":1,"time":"2026`))
	assert.False(t, ok)
	assert.False(t, isHex64("abc"))
	assert.False(t, isHex64(strings.Repeat("A", 64)))
	_, _, _, err := CheckRecordHash(bytes.Replace(raw, []byte(`,"prev":"`), []byte(`,"prex":"`), 1))
	assert.ErrorIs(t, err, ErrBadRecord)
	bad := Record{Encoding: EncodingBase64, Data: json.RawMessage(`"!!"`)}
	_, err = bad.Payload()
	assert.Error(t, err)
	bad.Data = json.RawMessage(`1`)
	_, err = bad.Payload()
	assert.Error(t, err)
}

func TestRecord_AppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\`, "\n\r\t\x00\x1f", "<&>", "é✓", "\xff\xfe", "a\u2028b"} {
		b := appendString(nil, s)
		assert.True(t, json.Valid(b), "%q -> %s", s, b)
		var back string
		require.NoError(t, json.Unmarshal(b, &back))
		assert.Equal(t, string([]rune(s)), back)
	}
	assert.Equal(t, `"<&>"`, string(appendString(nil, "<&>")), "no HTML escaping")
}

// FuzzEncodeBody checks that any payload, subject and msg id give a record
// that parses, hashes, and returns the payload: byte-exact when it is not
// JSON, compacted when it is.
func FuzzEncodeBody(f *testing.F) {
	for _, s := range []string{"", "{}", ` [1, "a" ] `, "\xff", `"\xff"`, "null", "<&>", "1e999"} {
		f.Add([]byte(s), "codi.audit.log.a.b", "id")
	}
	f.Fuzz(func(t *testing.T, payload []byte, subject, msgID string) {
		raw, hash := encodeRecord(9, 1, encodeBody(subject, "s", "c", msgID, payload), GenesisPrev)
		r, err := ParseRecord(raw)
		if err != nil {
			t.Fatalf("ParseRecord(%q): %v", raw, err)
		}
		if r.Hash != hash || r.Seq != 9 || r.Subject != string([]rune(subject)) {
			t.Fatalf("decoded %+v", r)
		}
		if _, _, ok, err := CheckRecordHash(raw); !ok || err != nil {
			t.Fatalf("hash check: %v %v", ok, err)
		}
		got, err := r.Payload()
		if err != nil {
			t.Fatal(err)
		}
		if isJSON(payload) {
			var want bytes.Buffer
			_ = json.Compact(&want, payload)
			if !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("JSON payload %q stored as %q", payload, got)
			}
		} else if !bytes.Equal(got, payload) {
			t.Fatalf("payload %q came back as %q", payload, got)
		}
		if !utf8.Valid(raw) || !json.Valid(raw) {
			t.Fatalf("record is not valid UTF-8 JSON: %q", raw)
		}
		// The single-pass parser agrees with encoding/json.
		var std Record
		if err := json.Unmarshal(raw, &std); err != nil {
			t.Fatal(err)
		}
		std.Raw = raw
		fast, ok := parseCanonical(raw)
		if !ok || !fast.Time.Equal(std.Time) {
			t.Fatalf("parseCanonical(%q) = %+v, %v", raw, fast, ok)
		}
		fast.Time = std.Time
		if !reflect.DeepEqual(fast, std) {
			t.Fatalf("parseCanonical = %+v, encoding/json = %+v", fast, std)
		}
	})
}

// FuzzVerifyExport feeds arbitrary bytes to the export checker and the
// query decoder: they must answer, not panic.
func FuzzVerifyExport(f *testing.F) {
	raw, _ := encodeRecord(1, 0, encodeBody("s", "a", "b", "", []byte("x")), GenesisPrev)
	for _, s := range []string{"", "\n", string(raw), string(raw) + "\n" + string(raw), `{"seq":1,`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		res, err := VerifyExport(bytes.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK && res.Line == 0 && !res.Empty {
			t.Fatalf("failure without a line: %+v", res)
		}
		_, _ = parseQuery(in, time.Now())
		if r, err := ParseRecord(in); err == nil {
			var std Record
			if json.Unmarshal(in, &std) != nil || std.Seq != r.Seq || std.Hash != r.Hash || !bytes.Equal(std.Data, r.Data) {
				t.Fatalf("ParseRecord(%q) = %+v, encoding/json %+v", in, r, std)
			}
		}
	})
}

func TestRecord_Parse_Fallback(t *testing.T) {
	hash := strings.Repeat("a", 64)
	// Valid JSON, hash last, but not the service's member order: decoded by
	// encoding/json.
	reordered := `{"seq":3,"source":"s","time":"2026-01-02T03:04:05Z","category":"c","subject":"x",` +
		`"data":{"k":[1,"]"]},"prev":"` + GenesisPrev + `","hash":"` + hash + `"}`
	r, err := ParseRecord([]byte(reordered))
	require.NoError(t, err)
	assert.Equal(t, uint64(3), r.Seq)
	assert.Equal(t, "s", r.Source)
	assert.Equal(t, `{"k":[1,"]"]}`, string(r.Data))
	assert.Equal(t, []byte(reordered), r.Raw)

	// The canonical order with escapes in strings and nested data.
	canonical := `{"seq":4,"time":"2026-01-02T03:04:05Z","subject":"a\"b","source":"s\u00e9","category":"c",` +
		`"msg_id":"m\\n","data":[{"a":"}"},[],"x\"y",1.5e3],"prev":"` + GenesisPrev + `","hash":"` + hash + `"}`
	r, err = ParseRecord([]byte(canonical))
	require.NoError(t, err)
	var std Record
	require.NoError(t, json.Unmarshal([]byte(canonical), &std))
	std.Raw = r.Raw
	assert.Equal(t, std, r)

	for _, bad := range []string{
		`{"seq":"x","prev":"` + GenesisPrev + `","hash":"` + hash + `"}`,
		`{"seq":1,"time":"not a time","prev":"` + GenesisPrev + `","hash":"` + hash + `"}`,
		`{"seq":1 "hash":"` + hash + `"}`,
	} {
		_, err := ParseRecord([]byte(bad))
		assert.ErrorIs(t, err, ErrBadRecord, bad)
	}
}

// isJSON is the rule encodeBody follows, said plainly: a payload is
// embedded when it is a valid JSON text that is also valid UTF-8.
func isJSON(p []byte) bool {
	return len(p) > 0 && utf8.Valid(p) && json.Valid(p)
}

// FuzzIsCompactJSON checks the intake's fast path against encoding/json:
// whatever isCompactJSON accepts, json.Compact accepts and leaves as it
// is; and every such payload nested at most maxCompactDepth deep takes the
// fast path.
func FuzzIsCompactJSON(f *testing.F) {
	for _, s := range []string{
		"", "{}", "[]", `{"a":1}`, `[1,"a",true,false,null]`, ` [1, "a" ] `, `{"a" :1}`,
		`"\u00e9\n\"\\\/\b\f\r\t"`, `"\u12"`, `"\x"`, "\"\x01\"", `-0.5e+10`, `01`, `1.`, `1e`, `-`,
		`{"a":{"b":[{}]}}`, `{"a":}`, `{"a":1,}`, `[1,]`, `{,}`, `tru`, `nulls`, `{"a"}`, `[1}`, `{"a":1]`,
		strings.Repeat("[", 64) + strings.Repeat("]", 64), strings.Repeat("[", 65) + strings.Repeat("]", 65),
		string(benchPayload), "\"\xff\"", "1 ", " 1",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var out bytes.Buffer
		err := json.Compact(&out, b)
		compact := err == nil && bytes.Equal(out.Bytes(), b)
		fast := isCompactJSON(b)
		if fast && !compact {
			t.Fatalf("isCompactJSON(%q) = true, but json.Compact gives %q, %v", b, out.Bytes(), err)
		}
		if compact && !fast && nesting(b) <= maxCompactDepth {
			t.Fatalf("isCompactJSON(%q) = false for a compact value", b)
		}
	})
}

// nesting returns the deepest nesting of containers in valid JSON b.
func nesting(b []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case !inString && (c == '{' || c == '['):
			depth++
			deepest = max(deepest, depth)
		case !inString && (c == '}' || c == ']'):
			depth--
		}
	}
	return deepest
}

func TestIsCompactJSON(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{`{"action":"file.write","n":[1,-2.5e3,true,false,null,{}],"s":"\"\u00e9"}`, true},
		{`[]`, true},
		{`0`, true},
		{`{"a": 1}`, false}, // whitespace: json.Compact's job
		{`{"a":01}`, false}, // invalid
		{`{"a":1`, false},   // unterminated
		{`"tab	in"`, false}, // a control character in a string
		{strings.Repeat("[", maxCompactDepth+1) + strings.Repeat("]", maxCompactDepth+1), false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, isCompactJSON([]byte(tt.in)), tt.in)
	}
}

// timeText writes what time.RFC3339Nano does in UTC, for times in one
// second after another (its kept text) and for any other, negative and
// extreme ones included.
func TestTimeText_AsRFC3339Nano(t *testing.T) {
	ts := []int64{0, 1, -1, 999_999_999, 1_000_000_000, -1_000_000_000, -999_999_999, 1_700_000_000_000_000_000,
		1_700_000_000_100_000_000, 1_700_000_000_000_000_010, 1_700_000_000_123_456_789, math.MaxInt64, math.MinInt64, math.MinInt64 + 1}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		ts = append(ts, rng.Int64(), 1_700_000_000_000_000_000+rng.Int64N(3e9), -rng.Int64N(1e12))
	}
	var tt timeText
	for _, n := range ts {
		want := time.Unix(0, n).UTC().Format(time.RFC3339Nano)
		require.Equal(t, want, string(tt.append(nil, n)), "t=%d", n)
		require.Equal(t, want, string(new(timeText).append(nil, n)), "t=%d, new", n)
	}
	buf := make([]byte, 0, 64)
	assert.Zero(t, testing.AllocsPerRun(100, func() { tt.append(buf[:0], 1_700_000_000_123_456_789) }))
}
