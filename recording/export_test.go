package recording

// SimulateCrash makes the manager behave as a process that dies: files
// are left without their final chunk and the catalog is not told anything
// more.
func (m *Manager) SimulateCrash() { m.crashed.Store(true) }

// OnKeyframeRequest has f told of every keyframe request (set it before
// Start).
func (m *Manager) OnKeyframeRequest(f func(trackID string)) { m.keyframeHook = f }
