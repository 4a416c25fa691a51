/*
Package filewatch records the changes made to a git working tree as audit
events, so that every agent's file edits are tracked in codi2's audit log,
apart from its messages.

# Basics

New and Run watch a directory of a repository recursively with fsnotify
(inotify on Linux), directories created later included, and hand each
change to a Sink as a Change: the path relative to the repository root,
the kind (create, write, remove, rename), the agent, and for a file that
exists its size and SHA-256. AuditSink publishes a Change as the audit event
codi.audit.log.<agent>.file.<op> with a Nats-Msg-Id, so a retried publish is
recorded once.

A change is decided when the file has been quiet for Config.Settle (the
coalescing window, default 100 ms; a file written without a pause is decided
ten windows and a second after its first event): every kernel event of one
file within the window is one Change, so an editor's save (truncate, writes,
close; or a temporary file renamed over the file) is one write, and 1,000
writes in a burst are one. The kind compares the file with what the watcher
knew before the window: a file it did not know that exists now is a create, one it knew
that exists is a write (unless its bytes are the same), one it knew that is
gone is a remove (a rename when the kernel said it was moved away), a known
file found at a new path with its old path gone (the same inode) is one
rename from the old path To the new, and one that appeared and vanished
within the window is no change at all.

Paths that .gitignore files (the repository's, and those of each directory
on the way down) ignore are skipped, and so is .git/.

# Caveats

Only regular files are recorded; directories, symbolic links and other files
are not (a directory's files are). .git/info/exclude and the global
excludes file are not read. A kernel queue overflow (more than
/proc/sys/fs/inotify/max_queued_events events unread) is repaired by
rescanning the tree against what the watcher knows (sizes and modification
times): nothing is missed, but several changes of one file in the lost
events are one write. The watcher keeps one entry per known file in memory.

Run owns every goroutine it starts and returns after they end. A Sink that
fails (the server restarting) is retried with backoff while changes queue in
memory, up to Config.MaxQueue; changes past that are dropped, counted,
logged at error and, once the Sink works again, reported as a Change of kind
"dropped" (the audit event file.dropped) with the count and the time range,
so nothing is lost silently.
*/
package filewatch
