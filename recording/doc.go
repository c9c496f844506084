// Package recording records meetings into encrypted WebM files and keeps
// their catalog.
//
// # What is recorded
//
// A recording taps a room of the SFU (sfu.Room.AddTap): it receives every
// published track, those present at Start and those published later,
// without being a participant. Each participant's camera and microphone
// go into one WebM file ("av"), and each screen share, with its audio if
// it has any, into another ("screen"). VP8 and VP9 video and Opus audio
// are recorded; any other codec (H.264 above all) is not, and the catalog
// keeps a track with status "unsupported" and a note saying so.
//
// A camera and a microphone rarely start at the same moment, and a
// file's header must name its tracks. The first track of a participant
// waits up to 1.5 s for its partner, its frames held meanwhile; a file
// with video also waits (up to 4 s) for a keyframe, whose picture size
// goes into the header. A partner that comes later ends the file, and a
// new file with both tracks starts: a new catalog track. A track that
// replaces an ended one of the same kind and codec (a camera turned off
// and on) continues in the same file; one of another codec starts a new
// file. A track that ends while its file waits for a header keeps its
// place in it, and when no track of the file is left the header is
// written with what is held (a Stop right after a participant started
// loses nothing).
//
// # From RTP to WebM
//
// The forwarding path hands each packet to the track's sink, which copies
// it into a bounded queue and never blocks: a full queue drops the packet
// and counts it. One goroutine per track drains its queue: Pion's sample
// builder puts frames together across loss and reordering (it gives up
// on a lost packet once 500 ms of media followed it), and a frame's time
// comes from its RTP timestamp, unwrapped, counted from the arrival of
// the track's first packet (so the camera and microphone of a file are
// aligned by when their first packets arrived). A frame whose RTP time
// and the arrival of its first packet disagree by more than 2 s (a pause
// during which timestamps did not advance, a jump) re-anchors the track's
// timeline on that arrival. The last frame of a track is not written (the
// builder only knows a frame is whole when the next one starts). Video starts on a
// keyframe, and after a lost frame (a gap in the VP8/VP9 picture ids, or
// dropped packets when there are none) nothing is written until the next
// keyframe, which is asked for at most once a second. A keyframe is also
// asked for every 10 s, so that a player seeking into the file finds one
// near. The two tracks of a file are interleaved in time order (a frame
// waits at most 0.7 s for the other track) and written with ebml-go's
// live WebM writer: a Segment and clusters of unknown size, a cluster
// starting on each video keyframe at least 1 s after the last and at
// least every 5 s.
//
// # Files and encryption
//
// Files are <Dir>/<128 random bits>.webm.age, mode 0600, in a 0700
// directory; no name comes from user input. The WebM stream is encrypted
// as it is written with age (filippo.io/age, ChaCha20-Poly1305 STREAM in
// 64 KiB chunks) to every configured recipient: no plaintext ever touches
// the disk, not even a temporary file. The catalog keeps, for each file,
// the SHA-256 of its age header and nonce, so that a file put in place of
// another (anyone knowing the public recipient can encrypt one) is
// refused.
//
// Keys: by default the server makes an X25519 identity in its data
// directory (recording-identity.txt, 0600, refused if others may read it)
// and encrypts to its recipient. An operator may instead configure only a
// recipient and keep the identity off the media server: recording still
// works, and the portal answers that it cannot decrypt (ErrNoIdentity)
// until it is given the identity. Losing the identity loses the
// recordings.
//
// # What a crash leaves
//
// age seals a chunk once 64 KiB of plaintext follow it, so a process that
// dies mid-recording leaves a file whose every chunk but the last decrypts
// and authenticates, and whose end is missing. The catalog is told each
// file's size and duration every 5 s while it is written. At startup,
// Recover marks recordings left "recording" as "incomplete" (on a
// cluster, only those of this node or of nodes that are gone) and, with an
// identity, measures what each file holds. Open serves such a file up to
// its last complete WebM element (Media.Incomplete): a valid WebM that
// ends early. Damage anywhere before the file's last chunk is still an
// integrity failure.
//
// # Serving
//
// Open verifies a complete file whole before returning anything: every
// chunk is decrypted and authenticated and the stream's end must be
// there; any failure is ErrIntegrity and no plaintext is returned.
// Successful verifications are cached by file, size and modification time,
// so that the Range requests of a player only decrypt the chunks they
// read (age's DecryptReaderAt; every chunk read is authenticated again).
// An interrupted file, which age cannot read at random, is read from its
// start by a cursor that moves forward (a read before it starts over).
//
// A live WebM has no duration in its header and no index (Cues): its
// header is written before either is known, and the encrypted stream
// cannot be rewritten. Parley reserves the place of the Duration (a Void
// element in Info) and, when it serves a complete file, puts the duration
// there; players then show the length and can seek, Chrome by reading the
// file from its clusters (no Cues are written, so a seek far ahead reads
// the clusters up to it). A file decrypted by hand (age -d) is a plain
// live WebM without a duration.
//
// # Catalog and retention
//
// The catalog is in the store (recordings, recording_tracks,
// recording_shares). Deleting a recording removes its files first, then
// its rows; a recording in progress cannot be deleted. Recordings outlive
// the deletion of their room: they are kept until they expire, a room's
// own retention (rooms.recording_retention_s) being gone with it, so the
// global one applies. DeleteExpired removes the recordings whose
// retention has passed: counted from their end, or from their start when
// they did not end normally; 0 keeps them forever.
//
// # Several nodes
//
// In multi-node mode every node records the meetings it hosts into the
// one catalog (the shared PostgreSQL database), and each recording names
// its node (Config.Node). Recover takes for interrupted only this node's
// recordings that it is not making and those of nodes that are no longer
// live in the cluster, once they are OrphanAge old; another live node's
// recordings in progress are left alone. The command runs it when the
// node has joined and then every 30 s, so that a killed node's recordings
// become incomplete without waiting for its restart. Recordings are
// finished conditionally (only while still "recording"), so that nodes
// recovering at the same time change each one once; the recorder's own
// end is written unconditionally, so that a node cut off from the cluster
// for a while, whose recordings another node took for orphans, still
// completes them. For every node's portal to serve every recording, the
// recordings directory and the identity are shared by all nodes (the
// command requires both to be given explicitly); a node that recovers an
// orphan whose files it cannot find keeps the progress the catalog saved.
package recording
