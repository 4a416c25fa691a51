package subjects

import "strings"

// Tail returns subject from token i (from 0) on, or "" when it has fewer
// tokens: Tail("codi.msg.a.b.task.assign", 4) is "task.assign". Like Token
// it does not validate or allocate; it reads what the server delivered.
func Tail(subject string, i int) string {
	for ; i > 0; i-- {
		_, rest, ok := strings.Cut(subject, ".")
		if !ok {
			return ""
		}
		subject = rest
	}
	return subject
}
