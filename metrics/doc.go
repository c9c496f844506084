// Package metrics is Parley's Prometheus exposition: a registry of its own
// (never the process-wide default) with the Go runtime and process
// collectors, collectors that read the components' counters at scrape time
// (the media plane, the signaling hub, the TURN server, the recorder), the
// audit log's entries counted as they are recorded, and a join-wait
// histogram fed by the hub. Server serves it on a listener of its own,
// /metrics only.
//
// No label carries user input: room and participant ids, names, addresses
// and subjects never become label values. Everything about meetings is
// summed over rooms, and every label takes one of a fixed set of values
// (an unexpected value is counted as "other").
//
// The media plane's counters (packets, NACKs, loss...) belong to tracks and
// subscriptions that come and go; the media collector keeps, per live
// track, the value it last saw, and adds what each one grew by to a
// process-wide total, so that the parley_media_*_total series only ever
// grow. What a track counted after the last scrape before it ended is not
// seen.
package metrics
