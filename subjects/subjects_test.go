package subjects

import (
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidToken(t *testing.T) {
	tests := []struct {
		name    string
		tok     string
		wantErr error
	}{
		{"plain", "agent-1", nil},
		{"utf8", "ägent_λ", nil},
		{"escaped path", "src/main%2Ego", nil},
		{"max length", strings.Repeat("a", MaxTokenLen), nil},
		{"empty", "", ErrBadToken},
		{"too long", strings.Repeat("a", MaxTokenLen+1), ErrBadToken},
		{"dot", "a.b", ErrBadToken},
		{"star", "a*", ErrBadToken},
		{"gt", ">", ErrBadToken},
		{"space", "a b", ErrBadToken},
		{"tab", "a\tb", ErrBadToken},
		{"nbsp", "a\u00a0b", ErrBadToken},
		{"control", "a\x01", ErrBadToken},
		{"del", "a\x7f", ErrBadToken},
		{"not utf8", "a\xff", ErrBadToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidToken(tt.tok)
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
		})
	}
}

func TestValidKind(t *testing.T) {
	for _, ok := range []string{"task", "file-reservation", "a", "x_1", "a" + strings.Repeat("b", 31)} {
		assert.NoError(t, ValidKind(ok), ok)
	}
	for _, bad := range []string{"", "Task", "1task", "-a", "a.b", "a" + strings.Repeat("b", 32), "tâche"} {
		assert.ErrorIs(t, ValidKind(bad), ErrBadKind, bad)
	}
}

func TestValidAgent(t *testing.T) {
	require.NoError(t, ValidAgent("agent-1"))
	require.ErrorIs(t, ValidAgent(All), ErrReserved)
	require.ErrorIs(t, ValidAgent("a.b"), ErrBadToken)
}

func TestBuilders(t *testing.T) {
	tests := []struct {
		name    string
		build   func() (string, error)
		want    string
		wantErr error
	}{
		{"msg", func() (string, error) { return Msg("agent-2", "agent-1", "task", "assign") }, "codi.msg.agent-2.agent-1.task.assign", nil},
		{"msg all", func() (string, error) { return Msg(All, "agent-1", "hello") }, "codi.msg.all.agent-1.hello", nil},
		{"msg from all", func() (string, error) { return Msg("agent-2", All, "x") }, "", ErrReserved},
		{"msg bad to", func() (string, error) { return Msg("a.b", "agent-1", "x") }, "", ErrBadToken},
		{"msg no type", func() (string, error) { return Msg("agent-2", "agent-1") }, "", ErrBadToken},
		{"msg bad type", func() (string, error) { return Msg("agent-2", "agent-1", "task", "") }, "", ErrBadToken},
		{"rpc", func() (string, error) { return RPC("agent-2", "agent-1", "ping") }, "codi.rpc.agent-2.agent-1.ping", nil},
		{"rpc to all", func() (string, error) { return RPC(All, "agent-1", "ping") }, "", ErrReserved},
		{"rpc bad from", func() (string, error) { return RPC("agent-2", "", "ping") }, "", ErrBadToken},
		{"rpc no method", func() (string, error) { return RPC("agent-2", "agent-1") }, "", ErrBadToken},
		{"cmd", func() (string, error) { return StateCmd("task", "ADR-028", "agent-1") }, "codi.state.cmd.task.ADR-028.agent-1", nil},
		{"cmd escaped id", func() (string, error) { return StateCmd("file", Escape("src/main.go"), "agent-1") }, "codi.state.cmd.file.src/main%2Ego.agent-1", nil},
		{"cmd bad kind", func() (string, error) { return StateCmd("Task", "x", "agent-1") }, "", ErrBadKind},
		{"cmd bad id", func() (string, error) { return StateCmd("task", "a b", "agent-1") }, "", ErrBadToken},
		{"cmd bad actor", func() (string, error) { return StateCmd("task", "x", All) }, "", ErrReserved},
		{"evt", func() (string, error) { return StateEvt("task", "x") }, "codi.state.evt.task.x", nil},
		{"evt bad", func() (string, error) { return StateEvt("task", "") }, "", ErrBadToken},
		{"get", func() (string, error) { return StateGet("task", "x") }, "codi.state.get.task.x", nil},
		{"get bad", func() (string, error) { return StateGet("", "x") }, "", ErrBadKind},
		{"list", func() (string, error) { return StateList("task") }, "codi.state.list.task", nil},
		{"list bad", func() (string, error) { return StateList("T") }, "", ErrBadKind},
		{"audit", func() (string, error) { return AuditLog("agent-1", "file") }, "codi.audit.log.agent-1.file", nil},
		{"audit more", func() (string, error) { return AuditLog("agent-1", "file", "write") }, "codi.audit.log.agent-1.file.write", nil},
		{"audit bad source", func() (string, error) { return AuditLog("", "file") }, "", ErrBadToken},
		{"audit bad category", func() (string, error) { return AuditLog("a", "b.c") }, "", ErrBadToken},
		{"audit bad more", func() (string, error) { return AuditLog("a", "b", "c d") }, "", ErrBadToken},
		{"inbox", func() (string, error) { return MsgInbox("agent-1") }, "codi.msg.agent-1.>", nil},
		{"inbox all", func() (string, error) { return MsgInbox(All) }, "", ErrReserved},
		{"rpc inbox", func() (string, error) { return RPCInbox("agent-1") }, "codi.rpc.agent-1.>", nil},
		{"rpc inbox bad", func() (string, error) { return RPCInbox("a>") }, "", ErrBadToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.build()
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.Empty(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	assert.Equal(t, "codi.msg.all.>", MsgBroadcast)
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		subject string
		want    Subject
		wantErr error
	}{
		{"msg", "codi.msg.agent-2.agent-1.task.assign", Subject{Type: TypeMsg, To: "agent-2", From: "agent-1", Rest: []string{"task", "assign"}}, nil},
		{"rpc", "codi.rpc.agent-2.agent-1.ping", Subject{Type: TypeRPC, To: "agent-2", From: "agent-1", Rest: []string{"ping"}}, nil},
		{"cmd", "codi.state.cmd.task.ADR-1.agent-1", Subject{Type: TypeStateCmd, Kind: "task", ID: "ADR-1", Actor: "agent-1"}, nil},
		{"evt", "codi.state.evt.task.ADR-1", Subject{Type: TypeStateEvt, Kind: "task", ID: "ADR-1"}, nil},
		{"get", "codi.state.get.task.ADR-1", Subject{Type: TypeStateGet, Kind: "task", ID: "ADR-1"}, nil},
		{"list", "codi.state.list.task", Subject{Type: TypeStateList, Kind: "task"}, nil},
		{"state committed", StateCommitted, Subject{Type: TypeStateCommitted}, nil},
		{"state status", StateStatus, Subject{Type: TypeStateStatus}, nil},
		{"audit", "codi.audit.log.agent-1.file", Subject{Type: TypeAuditLog, Source: "agent-1", Category: "file"}, nil},
		{"audit more", "codi.audit.log.agent-1.file.write.x", Subject{Type: TypeAuditLog, Source: "agent-1", Category: "file", Rest: []string{"write", "x"}}, nil},
		{"audit query", AuditQuery, Subject{Type: TypeAuditQuery}, nil},
		{"audit verify", AuditVerify, Subject{Type: TypeAuditVerify}, nil},
		{"audit committed", AuditCommitted, Subject{Type: TypeAuditCommitted}, nil},
		{"audit status", AuditStatus, Subject{Type: TypeAuditStatus}, nil},
		{"state bad request", StateBadRequest, Subject{Type: TypeStateBadRequest}, nil},
		{"evt lower-case escape", "codi.state.evt.file.src%2ego", Subject{}, ErrBadEscape},
		{"cmd needless escape", "codi.state.cmd.file.%61.agent-1", Subject{}, ErrBadEscape},
		{"not codi", "foo.msg.a.b.c", Subject{}, ErrUnknown},
		{"short", "codi.msg", Subject{}, ErrUnknown},
		{"msg short", "codi.msg.a.b", Subject{}, ErrUnknown},
		{"status extra", "codi.state.status.x", Subject{}, ErrUnknown},
		{"cmd short", "codi.state.cmd.task.x", Subject{}, ErrUnknown},
		{"audit short", "codi.audit.log.a", Subject{}, ErrUnknown},
		{"unknown", "codi.other.thing", Subject{}, ErrUnknown},
		{"msg reserved sender", "codi.msg.a.all.x", Subject{}, ErrReserved},
		{"cmd bad kind", "codi.state.cmd.Task.x.a", Subject{}, ErrBadKind},
		{"evt bad kind", "codi.state.evt.Task.x", Subject{}, ErrBadKind},
		{"list bad kind", "codi.state.list.Task", Subject{}, ErrBadKind},
		{"empty token", "codi.msg..a.x", Subject{}, ErrBadToken},
		{"rpc bad", "codi.rpc.a.b.c d", Subject{}, ErrBadToken},
		{"audit bad", "codi.audit.log.a.b.*", Subject{}, ErrBadToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.subject)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestType_String(t *testing.T) {
	assert.Equal(t, "state.cmd", TypeStateCmd.String())
	assert.Equal(t, "audit.status", TypeAuditStatus.String())
	assert.Equal(t, "state.evt.bad_request", TypeStateBadRequest.String())
	assert.Equal(t, "Type(0)", Type(0).String())
	assert.Equal(t, "Type(99)", Type(99).String())
}

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"src/main.go", "src/main%2Ego"},
		{"plain", "plain"},
		{"a*b>c%d", "a%2Ab%3Ec%25d"},
		{"a b\tc\n", "a%20b%09c%0A"},
		{"\x00\x7f", "%00%7F"},
		{"ü.ñ", "ü%2Eñ"},
		{"\u00a0", "%C2%A0"},
		{"\xff", "%FF"},
		{"", ""},
	}
	for _, tt := range tests {
		got := Escape(tt.in)
		assert.Equal(t, tt.want, got, "Escape(%q)", tt.in)
		back, err := Unescape(got)
		require.NoError(t, err)
		assert.Equal(t, tt.in, back)
		if tt.in != "" {
			assert.NoError(t, ValidToken(got), "escaped %q is a token", tt.in)
		}
	}
}

// Unescape accepts exactly what Escape writes: every other spelling of a
// string is refused, naming the problem (issue 12, input 2).
func TestUnescape_Errors(t *testing.T) {
	tests := []struct{ tok, wantMsg string }{
		{"%", "ends inside the escape"},
		{"%2", "ends inside the escape"},
		{"a%G0", "two upper-case hex digits"},
		{"%ZZ", "two upper-case hex digits"},
		{"%-1", "two upper-case hex digits"},
		{"src/main%2ego", "must be upper case (%2E)"},
		{"%61", `an escape of "a", which is written as is`},
		{"%61gent-1", `an escape of "a"`},
		{"%C3%BC", `an escape of "ü"`},
		{"\xC3%BC", `an escape of "ü"`},
		{"%2F", `an escape of "/"`},
		{"a.b%2E", `"." unescaped at byte 1: write it as %2E`},
		{"a b%20", `" " unescaped`},
		{"\xff%25", `"\xff" unescaped`},
	}
	for _, tt := range tests {
		_, err := Unescape(tt.tok)
		require.ErrorIs(t, err, ErrBadEscape, tt.tok)
		assert.Contains(t, err.Error(), tt.wantMsg, tt.tok)
	}
}

// Two spellings of one name would be two records: ValidToken, and so every
// builder and Parse, refuses the non-canonical ones.
func TestValidToken_OneSpelling(t *testing.T) {
	for _, bad := range []string{"src/main%2ego", "%61", "x%ZZ", "%C3%BC", "50%", "50%off", "a%2F"} {
		err := ValidToken(bad)
		require.ErrorIs(t, err, ErrBadToken, bad)
		require.ErrorIs(t, err, ErrBadEscape, bad)
		_, err = StateCmd("file", bad, "agent-1")
		require.ErrorIs(t, err, ErrBadEscape, bad)
		_, err = Parse("codi.state.get.file." + bad)
		require.ErrorIs(t, err, ErrBadEscape, bad)
		_, err = Parse("codi.msg." + bad + ".agent-1.x")
		require.ErrorIs(t, err, ErrBadEscape, bad)
		_, err = Parse("codi.audit.log.agent-1.c." + bad)
		require.ErrorIs(t, err, ErrBadEscape, bad)
	}
	for _, good := range []string{"src/main%2Ego", "%25", "ü%2Eñ", "%FF", "50%25off"} {
		require.NoError(t, ValidToken(good), good)
	}
}

func TestHint(t *testing.T) {
	tests := []struct{ subject, want string }{
		{"codi.state.get.file.src/main.go", `the id "src/main.go" must be one token: escape it as "src/main%2Ego"`},
		{"codi.state.cmd.file.src/main.go.agent-2", `the id "src/main.go" must be one token: escape it as "src/main%2Ego"`},
		{"codi.state.cmd.file.a b.c.agent-2", `escape it as "a%20b%2Ec"`},
		{"codi.state.list.file.x", "list takes no id"},
		{"codi.state.get.file.x", ""},
		{"codi.state.cmd.file.x.agent-1", ""},
		{"codi.msg.a.b.c", ""},
		{"codi.state", ""},
	}
	for _, tt := range tests {
		got := Hint(tt.subject)
		if tt.want == "" {
			assert.Empty(t, got, tt.subject)
			continue
		}
		assert.Contains(t, got, tt.want, tt.subject)
	}
}

func TestWildcards_MatchBuiltSubjects(t *testing.T) {
	get, err := StateGet("task", "ADR-028")
	require.NoError(t, err)
	list, err := StateList("task")
	require.NoError(t, err)
	cases := map[string]string{StateGetWildcard: get, StateListWildcard: list, MsgWildcard: "codi.msg.a.b.c",
		StateCmdWildcard: "codi.state.cmd.t.i.a", StateEvtWildcard: "codi.state.evt.t.i", AuditLogWildcard: "codi.audit.log.s.c",
		RPCWildcard: "codi.rpc.a.b.c"}
	for wc, subj := range cases {
		assert.True(t, server.SubjectMatchesFilter(subj, wc), "%s matches %s", wc, subj)
	}
	assert.False(t, server.SubjectMatchesFilter(list, StateGetWildcard))
}

func TestToken(t *testing.T) {
	subject := "codi.audit.log.agent-1.file.write"
	for i, want := range []string{"codi", "audit", "log", "agent-1", "file", "write", "", ""} {
		assert.Equal(t, want, Token(subject, i), "token %d", i)
	}
	assert.Equal(t, "", Token("codi..x", 1), "an empty token")
	assert.Equal(t, "x", Token("codi..x", 2))
	assert.Equal(t, "", Token("", 0))
	assert.Equal(t, 0.0, testing.AllocsPerRun(10, func() { _ = Token(subject, 4) }))
}
