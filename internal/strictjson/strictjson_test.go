package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type target struct {
	Op     *string         `json:"op"`
	Fields json.RawMessage `json:"fields"`
	TTL    *int64          `json:"ttl_ms"`
	Rev    uint64          `json:"rev"`
	Tags   []string        `json:"tags"`
	On     bool            `json:"on"`
	Ratio  float64         `json:"ratio"`
	Sub    struct {
		N int `json:"n"`
	} `json:"sub"`
	Skip   string `json:"-"`
	hidden int
	Plain  string
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name, in string
		wantErr  error
		wantMsg  string
	}{
		{"ok", `{"op":"put","fields":{"a":[1,{"b":null}]},"ttl_ms":5}`, nil, ""},
		{"null", `null`, nil, ""},
		{"escaped names differ", `{"fields":{"a":1,"\u0062":2}}`, nil, ""},
		{"empty", ` `, ErrInvalid, "empty"},
		{"syntax", `{"op":}`, ErrInvalid, "at byte 7"},
		{"truncated", `{"op":"put"`, ErrInvalid, "unexpected end"},
		{"trailing", `{"op":"put"} x`, ErrInvalid, "after top-level value"},
		{"not utf8", "{\"op\":\"p\xffut\"}", ErrNotUTF8, "at byte 8"},
		{"not utf8 in fields", "{\"fields\":{\"a\":\"\xc3\"}}", ErrNotUTF8, ""},
		{"duplicate top", `{"op":"merge","op":"put"}`, ErrDuplicate, `duplicate member "op" at byte 14`},
		{"duplicate nested", `{"fields":{"a":1,"a":2}}`, ErrDuplicate, `"a"`},
		{"duplicate escaped", `{"fields":{"a":1,"\u0061":2}}`, ErrDuplicate, `"a"`},
		{"duplicate in array object", `{"tags":[],"fields":[{"x":1,"y":{"x":2},"x":3}]}`, ErrDuplicate, `"x"`},
		{"too deep", `{"fields":` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + `}`, ErrTooDeep, "more than 64 levels"},
		{"unknown", `{"form":"x"}`, ErrUnknown, `unknown member "form" (members: op, fields, ttl_ms, rev, tags, on, ratio, sub, Plain)`},
		{"array for object", `[1]`, ErrType, "want an object, not array"},
		{"array for string", `{"op":[1]}`, ErrType, "op must be a string, not array"},
		{"fraction", `{"ttl_ms":1.5}`, ErrType, "ttl_ms must be an integer, not number 1.5"},
		{"negative uint", `{"rev":-1}`, ErrType, "rev must be a non-negative integer, not number -1"},
		{"bool", `{"on":1}`, ErrType, "on must be true or false"},
		{"number", `{"ratio":"x"}`, ErrType, "ratio must be a number"},
		{"array", `{"tags":{}}`, ErrType, "tags must be an array"},
		{"nested", `{"sub":{"n":"x"}}`, ErrType, "sub.n must be an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v target
			err := Decode([]byte(tt.in), &v)
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
			assert.Contains(t, err.Error(), tt.wantMsg)
			assert.NotContains(t, err.Error(), "Go ")
			assert.NotContains(t, err.Error(), "struct")
			assert.NotContains(t, err.Error(), "int64")
		})
	}
	depth64 := `{"fields":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}`
	require.NoError(t, Decode([]byte(depth64), &target{}))
	wide := `{"fields":{`
	for i := range 40 {
		wide += fmt.Sprintf(`"k%d":1,`, i)
	}
	require.NoError(t, Decode([]byte(wide+`"k40":1}}`), &target{}))
	require.ErrorIs(t, Decode([]byte(wide+`"k7":1}}`), &target{}), ErrDuplicate)
	// Names of a nested object are its own, before and after the switch to
	// a map, and the outer object's names still count after it closes.
	require.NoError(t, Decode([]byte(wide+`"in":{"k1":1,"k2":{"k1":2}},"k40":1}}`), &target{}))
	require.ErrorIs(t, Decode([]byte(wide+`"in":{"k1":1},"k1":1}}`), &target{}), ErrDuplicate)
	require.NoError(t, Decode([]byte(`{"fields":{"a":{"x":1},"b":{"x":1},"x":1}}`), &target{}))
	require.ErrorIs(t, Decode([]byte(`{"fields":{"a":{"x":1},"b":{"x":1},"a":1}}`), &target{}), ErrDuplicate)
}

func TestDescribe_Other(t *testing.T) {
	err := describe(errors.New("json: something else"), "")
	require.ErrorIs(t, err, ErrInvalid)
	assert.Equal(t, "invalid JSON: something else", err.Error())
	err = describe(errors.New(`json: unknown field "x"`), "")
	assert.Equal(t, `unknown member "x"`, err.Error())
	assert.Equal(t, "another type", kindName(reflectTypeOf(func() {})))
	assert.Equal(t, "", knownMembers(new(int)))
	assert.Equal(t, "", knownMembers(nil))
}

// FuzzCheck compares Check with a reference built on encoding/json's
// tokenizer: they agree on validity, depth and duplicate names.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{"op":"put","fields":{}}`, `{"a":1,"a":2}`, `{"a":{"b":1,"\u0062":2}}`, `[[[[]]]]`,
		`{"op":"merge","op":"put"}`, "\"\xff\"", `{"a":"\"}"}`, `[{"a":1},{"a":1}]`, ``, `1 2`, `{"a\\"":1,"a\"":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := Check(data, 4)
		want := reference(data, 4)
		if (err == nil) != (want == nil) {
			t.Fatalf("Check(%q) = %v, reference %v", data, err, want)
		}
		if err != nil && want != nil && !errors.Is(err, want) {
			t.Fatalf("Check(%q) = %v, reference %v", data, err, want)
		}
	})
}

// reference is Check written the slow, obvious way.
func reference(data []byte, maxDepth int) error {
	if !utf8.Valid(data) {
		return ErrNotUTF8
	}
	if !json.Valid(data) {
		return ErrInvalid
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	// Numbers as written: JSON has no range, float64 has (a number of 300
	// digits is valid JSON, and Check rightly takes it).
	dec.UseNumber()
	type level struct {
		object  bool
		wantKey bool
		names   map[string]bool
	}
	var stack []*level
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return ErrInvalid
		}
		top := (*level)(nil)
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if len(stack) == maxDepth {
					return ErrTooDeep
				}
				if top != nil && top.object {
					top.wantKey = true
				}
				stack = append(stack, &level{object: v == '{', wantKey: v == '{', names: map[string]bool{}})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if top != nil && top.object && top.wantKey {
				if top.names[v] {
					return ErrDuplicate
				}
				top.names[v] = true
				top.wantKey = false
				continue
			}
		}
		if top != nil && top.object {
			top.wantKey = true
		}
	}
}

func reflectTypeOf(v any) reflect.Type { return reflect.TypeOf(v) }
