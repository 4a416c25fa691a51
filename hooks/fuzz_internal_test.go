package hooks

import (
	"encoding/json"
	"testing"
)

// FuzzToolPath checks the reading of a file tool's target from Claude
// Code's hook input against a plain decode: the path is tool_input's
// file_path when it is a non-empty string, else its notebook_path when it
// is a string, member names matched exactly; no input panics.
func FuzzToolPath(f *testing.F) {
	for _, s := range []string{
		`{"tool_name":"Edit","tool_input":{"file_path":"/r/src/main.go","old_string":"a","new_string":"b"}}`,
		`{"tool_name":"NotebookEdit","tool_input":{"notebook_path":"nb.ipynb","new_source":"x"}}`,
		`{"tool_name":"Write","tool_input":{"file_path":"","notebook_path":"x"}}`,
		`{"tool_name":"Edit","tool_input":{"file_path":1}}`,
		`{"tool_name":"Bash","tool_input":{"command":"ls"}}`,
		`{"tool_input":null}`,
		`{"tool_input":"file_path"}`,
		`{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var hi Input
		if json.Unmarshal(data, &hi) != nil {
			return
		}
		got := toolPath(hi)
		var ref map[string]any
		if json.Unmarshal(hi.ToolInput, &ref) != nil {
			if got != "" {
				t.Fatalf("path %q from tool_input %s that is not an object", got, hi.ToolInput)
			}
			return
		}
		fp, _ := ref["file_path"].(string)
		np, _ := ref["notebook_path"].(string)
		want := fp
		if want == "" {
			want = np
		}
		if got != want {
			t.Fatalf("toolPath(%s) = %q, want %q", hi.ToolInput, got, want)
		}
	})
}
