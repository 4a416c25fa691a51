package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting Decode accepts: the top-level value is
// depth 1, so {"fields":{"a":[1]}} is depth 3. Deeper documents crash
// recursive JSON parsers (Python's json module stops near 1,000), so they
// are refused rather than stored for others to fail on.
const MaxDepth = 64

// Check reports whether data is exactly one JSON value, valid UTF-8, nested
// at most maxDepth levels, with no object naming a member twice ("a" and
// "\u0061" are the same name). It is safe for concurrent use.
func Check(data []byte, maxDepth int) error {
	if !utf8.Valid(data) {
		return fmt.Errorf("%w at byte %d", ErrNotUTF8, firstInvalid(data))
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return fmt.Errorf("%w: empty, want a JSON value", ErrInvalid)
	}
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v)
		return describe(err, "")
	}
	return scan(data, maxDepth)
}

// Decode decodes data, which must pass Check with MaxDepth, into v (a
// pointer), refusing members that v does not name. A JSON null leaves v
// unchanged. Errors wrap this package's sentinels and read like
// `ttl_ms must be an integer, not number 1.5` or `unknown member "form"`.
// Safe for concurrent use with distinct v.
func Decode(data []byte, v any) error {
	if err := Check(data, MaxDepth); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return describe(err, knownMembers(v))
	}
	return nil
}

func firstInvalid(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(data)
}

// describe turns an encoding/json error into this package's words. known
// lists the members the target takes, for an unknown member's message.
func describe(err error, known string) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("%w at byte %d: %s", ErrInvalid, syn.Offset, syn.Error())
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Errorf("%w: want %s, not %s", ErrType, kindName(typ.Type), typ.Value)
		}
		return fmt.Errorf("%w: %s must be %s, not %s", ErrType, typ.Field, kindName(typ.Type), typ.Value)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: unexpected end of input", ErrInvalid)
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		if known != "" {
			return fmt.Errorf("%w %s (members: %s)", ErrUnknown, name, known)
		}
		return fmt.Errorf("%w %s", ErrUnknown, name)
	}
	return fmt.Errorf("%w: %s", ErrInvalid, strings.TrimPrefix(msg, "json: "))
}

// kindName names what a value of Go type t looks like in JSON.
func kindName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "another type"
}

// knownMembers lists the JSON member names of the struct v points to.
func knownMembers(v any) string {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return ""
	}
	var names []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return strings.Join(names, ", ")
}

// frame is an open object or array during scan.
type frame struct {
	object  bool
	wantKey bool // the next string in this object is a member name
	start   int  // this object's names begin at keys[start]
	set     map[string]struct{}
}

// smallObject is how many names an object compares one by one before it
// switches to a map.
const smallObject = 16

// scan checks nesting and member names of data, which is valid JSON. Names
// are compared as the bytes of data (decoded only when they hold escapes),
// so a small document costs no allocation beyond its first few names.
func scan(data []byte, maxDepth int) error {
	var (
		stackBuf [16]frame
		keysBuf  [32][]byte
	)
	stack, keys := stackBuf[:0], keysBuf[:0]
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '{', '[':
			if len(stack) == maxDepth {
				return fmt.Errorf("%w: more than %d levels at byte %d", ErrTooDeep, maxDepth, i)
			}
			stack = append(stack, frame{object: data[i] == '{', wantKey: data[i] == '{', start: len(keys)})
		case '}', ']':
			keys = keys[:stack[len(stack)-1].start]
			stack = stack[:len(stack)-1]
		case ',':
			if top := len(stack) - 1; stack[top].object {
				stack[top].wantKey = true
			}
		case '"':
			start := i
			escaped := false
			for i++; data[i] != '"'; i++ {
				if data[i] == '\\' {
					escaped = true
					i++
				}
			}
			n := len(stack)
			if n == 0 || !stack[n-1].wantKey {
				continue
			}
			f := &stack[n-1]
			f.wantKey = false
			name := data[start+1 : i]
			if escaped {
				var s string
				_ = json.Unmarshal(data[start:i+1], &s) // valid JSON: cannot fail
				name = []byte(s)
			}
			dup := false
			if keys, dup = f.add(keys, name); dup {
				return fmt.Errorf("%w %q at byte %d", ErrDuplicate, name, start)
			}
		}
	}
	return nil
}

// add records name in f, whose names are keys[f.start:], and reports
// whether f already had it.
func (f *frame) add(keys [][]byte, name []byte) ([][]byte, bool) {
	if f.set != nil {
		if _, dup := f.set[string(name)]; dup {
			return keys, true
		}
		f.set[string(name)] = struct{}{}
		return keys, false
	}
	for _, k := range keys[f.start:] {
		if bytes.Equal(k, name) {
			return keys, true
		}
	}
	keys = append(keys, name)
	if len(keys)-f.start > smallObject {
		f.set = make(map[string]struct{}, 2*smallObject)
		for _, k := range keys[f.start:] {
			f.set[string(k)] = struct{}{}
		}
		keys = keys[:f.start]
	}
	return keys, false
}
