// Package strictjson decodes JSON from the wire with one reading per
// document: valid UTF-8 only, bounded nesting, no duplicate members, no
// unknown members, nothing after the value; its errors name the problem in
// the request's terms, never in Go's.
package strictjson
