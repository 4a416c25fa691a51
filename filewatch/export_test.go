package filewatch

// Inject hands err to the running loop as if the kernel watch reported it
// (fsnotify.ErrEventOverflow: the kernel queue overflowed). Call it after
// Ready.
func (w *Watcher) Inject(err error) { w.fw.Errors <- err }
