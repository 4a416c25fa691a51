package subjects_test

import (
	"fmt"

	"github.com/codi2/codi2/subjects"
)

func ExampleMsg() {
	s, err := subjects.Msg("agent-2", "agent-1", "task", "assign")
	fmt.Println(s, err)
	// Output: codi.msg.agent-2.agent-1.task.assign <nil>
}

func ExampleEscape() {
	tok := subjects.Escape("src/main.go")
	s, _ := subjects.StateCmd("file", tok, "agent-1")
	id, _ := subjects.Unescape(tok)
	fmt.Println(s)
	fmt.Println(id)
	// Output:
	// codi.state.cmd.file.src/main%2Ego.agent-1
	// src/main.go
}

func ExampleParse() {
	s, _ := subjects.Parse("codi.audit.log.agent-1.file.write")
	fmt.Println(s.Type, s.Source, s.Category, s.Rest)
	// Output: audit.log agent-1 file [write]
}
