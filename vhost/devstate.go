package vhost

import (
	"encoding/binary"
	"fmt"
)

// DeviceState is what a device carries from the source back-end to the
// destination's across a migration, besides guest memory and the ring
// bases QEMU moves itself (VHOST_USER_PROTOCOL_F_DEVICE_STATE,
// SET_DEVICE_STATE_FD). It travels in vhostd's own format, which
// EncodeDeviceState writes and DecodeDeviceState reads and validates.
type DeviceState struct {
	// Features are the virtio features the driver had acked on the source.
	Features uint64
	MAC      [6]byte
	MTU      uint16
	// QueuePairs is how many queue pairs the source device had: every
	// frame's Pair is below it.
	QueuePairs uint16
	// Frames reached the source's host interface after its rings stopped;
	// the destination hands them to the guest first once its RX rings
	// start. At most MaxStateFrames, MaxStateFrameBytes in all.
	Frames []StateFrame
}

// StateFrame is one frame held for the guest, as the host interface gave
// it (the device's own header included), with its queue pair.
type StateFrame struct {
	Pair uint16
	Data []byte
}

// Bounds of the state stream.
const (
	// MaxStateFrames and MaxStateFrameBytes bound the frames one state
	// carries: what does not fit is left behind (and lost, as with any
	// other back-end).
	MaxStateFrames     = 256
	MaxStateFrameBytes = 4 << 20
	// MaxStateFrame bounds one frame; the device checks its own, smaller
	// limit when it loads the state.
	MaxStateFrame = 128 << 10
	// maxStateStream is the longest valid stream: header, config section,
	// frames section at its limits, end marker.
	maxStateStream = stateHdrLen + sectHdrLen + configSectLen + sectHdrLen + 4 + MaxStateFrames*frameHdrLen + MaxStateFrameBytes + sectHdrLen
)

// The stream: magic, version, then sections, each a header {id u16,
// reserved u16 (zero), length u32} and length bytes of body, all little
// endian. The config section comes first and exactly once, the frames
// section at most once after it, and the end section (empty) last: a
// stream without it was cut short.
const (
	stateMagic   = "VHOSTDST"
	stateVersion = 1
	stateHdrLen  = 8 + 4
	sectHdrLen   = 2 + 2 + 4
	// config: features u64, mac [6]byte, mtu u16, queue pairs u16,
	// reserved u16 (zero).
	configSectLen = 8 + 6 + 2 + 2 + 2
	// frames: count u32, then per frame {pair u16, length u32, bytes}.
	frameHdrLen = 2 + 4

	sectConfig = 1
	sectFrames = 2
	sectEnd    = 0xffff
)

// StateError is the kind of fault a state stream is refused for;
// DecodeDeviceState wraps one with the field and value at fault, so that
// errors.Is(err, ErrStateTruncated) and the like tell the kind.
type StateError string

func (e StateError) Error() string { return "device state: " + string(e) }

// The kinds of StateError.
const (
	ErrStateMagic     StateError = "not a vhostd state stream (bad magic)"
	ErrStateVersion   StateError = "unsupported version"
	ErrStateTruncated StateError = "stream truncated"
	ErrStateTooLarge  StateError = "over the limits"
	ErrStateSection   StateError = "bad section"
	ErrStateField     StateError = "bad field"
	ErrStateTrailing  StateError = "bytes after the end section"
)

func stateErr(kind error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", kind, fmt.Sprintf(format, args...))
}

// EncodeDeviceState writes st in the stream format. It refuses a state
// DecodeDeviceState would refuse.
func EncodeDeviceState(st *DeviceState) ([]byte, error) {
	if err := st.validate(); err != nil {
		return nil, err
	}
	size := stateHdrLen + sectHdrLen + configSectLen + sectHdrLen
	framesLen := 4
	for _, f := range st.Frames {
		framesLen += frameHdrLen + len(f.Data)
	}
	if len(st.Frames) > 0 {
		size += sectHdrLen + framesLen
	}
	b := make([]byte, 0, size)
	b = append(b, stateMagic...)
	b = binary.LittleEndian.AppendUint32(b, stateVersion)
	b = appendSect(b, sectConfig, configSectLen)
	b = binary.LittleEndian.AppendUint64(b, st.Features)
	b = append(b, st.MAC[:]...)
	b = binary.LittleEndian.AppendUint16(b, st.MTU)
	b = binary.LittleEndian.AppendUint16(b, st.QueuePairs)
	b = binary.LittleEndian.AppendUint16(b, 0)
	if len(st.Frames) > 0 {
		b = appendSect(b, sectFrames, framesLen)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(st.Frames)))
		for _, f := range st.Frames {
			b = binary.LittleEndian.AppendUint16(b, f.Pair)
			b = binary.LittleEndian.AppendUint32(b, uint32(len(f.Data)))
			b = append(b, f.Data...)
		}
	}
	return appendSect(b, sectEnd, 0), nil
}

func appendSect(b []byte, id uint16, n int) []byte {
	b = binary.LittleEndian.AppendUint16(b, id)
	b = binary.LittleEndian.AppendUint16(b, 0)
	return binary.LittleEndian.AppendUint32(b, uint32(n))
}

// validate checks the limits and the frames' queue pairs.
func (st *DeviceState) validate() error {
	if st.QueuePairs == 0 {
		return stateErr(ErrStateField, "queue_pairs 0")
	}
	if len(st.Frames) > MaxStateFrames {
		return stateErr(ErrStateTooLarge, "%d frames, at most %d", len(st.Frames), MaxStateFrames)
	}
	total := 0
	for i, f := range st.Frames {
		if len(f.Data) == 0 || len(f.Data) > MaxStateFrame {
			return stateErr(ErrStateField, "frame %d: length %d outside 1..%d", i, len(f.Data), MaxStateFrame)
		}
		if f.Pair >= st.QueuePairs {
			return stateErr(ErrStateField, "frame %d: queue pair %d, the device has %d", i, f.Pair, st.QueuePairs)
		}
		total += len(f.Data)
	}
	if total > MaxStateFrameBytes {
		return stateErr(ErrStateTooLarge, "%d bytes of frames, at most %d", total, MaxStateFrameBytes)
	}
	return nil
}

// stateReader reads the stream front to back; every short read is
// ErrStateTruncated.
type stateReader struct {
	b   []byte
	off int
}

func (r *stateReader) take(n int, what string) ([]byte, error) {
	if n < 0 || len(r.b)-r.off < n {
		return nil, stateErr(ErrStateTruncated, "%s: %d bytes at offset %d, %d left", what, n, r.off, len(r.b)-r.off)
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p, nil
}

// DecodeDeviceState parses and validates a whole state stream. It returns
// an error wrapping one of the ErrState* errors and naming the field and
// value at fault; the state it returns passed every check (frames refer to
// b's bytes).
func DecodeDeviceState(b []byte) (*DeviceState, error) {
	if len(b) > maxStateStream {
		return nil, stateErr(ErrStateTooLarge, "stream of %d bytes, at most %d", len(b), maxStateStream)
	}
	r := &stateReader{b: b}
	hdr, err := r.take(stateHdrLen, "header")
	if err != nil {
		return nil, err
	}
	if string(hdr[:8]) != stateMagic {
		return nil, stateErr(ErrStateMagic, "magic %q, want %q", hdr[:8], stateMagic)
	}
	if v := binary.LittleEndian.Uint32(hdr[8:]); v != stateVersion {
		return nil, stateErr(ErrStateVersion, "version %d, this vhostd reads %d", v, stateVersion)
	}
	var st *DeviceState
	framesSeen := false
	for {
		id, body, err := r.section()
		if err != nil {
			return nil, err
		}
		switch {
		case id == sectEnd && st == nil:
			return nil, stateErr(ErrStateSection, "no config section")
		case id == sectEnd:
			if len(body) != 0 {
				return nil, stateErr(ErrStateSection, "end section of %d bytes, want 0", len(body))
			}
			if r.off != len(b) {
				return nil, stateErr(ErrStateTrailing, "%d bytes after the end section", len(b)-r.off)
			}
			return st, st.validate()
		case id == sectConfig && st == nil:
			if st, err = decodeConfig(body); err != nil {
				return nil, err
			}
		case id == sectFrames && st != nil && !framesSeen:
			framesSeen = true
			if st.Frames, err = decodeFrames(body, st.QueuePairs); err != nil {
				return nil, err
			}
		default:
			return nil, stateErr(ErrStateSection, "section %d at offset %d: unknown, repeated or out of order", id, r.off-len(body)-sectHdrLen)
		}
	}
}

// section reads one section header and its body.
func (r *stateReader) section() (id uint16, body []byte, err error) {
	h, err := r.take(sectHdrLen, "section header")
	if err != nil {
		return 0, nil, err
	}
	id = binary.LittleEndian.Uint16(h)
	if res := binary.LittleEndian.Uint16(h[2:]); res != 0 {
		return 0, nil, stateErr(ErrStateField, "section %d: reserved %#x, want 0", id, res)
	}
	n := binary.LittleEndian.Uint32(h[4:])
	if n > maxStateStream {
		return 0, nil, stateErr(ErrStateTooLarge, "section %d: length %d", id, n)
	}
	body, err = r.take(int(n), fmt.Sprintf("section %d", id))
	return id, body, err
}

func decodeConfig(b []byte) (*DeviceState, error) {
	if len(b) != configSectLen {
		return nil, stateErr(ErrStateSection, "config section of %d bytes, want %d", len(b), configSectLen)
	}
	st := &DeviceState{
		Features:   binary.LittleEndian.Uint64(b),
		MTU:        binary.LittleEndian.Uint16(b[14:]),
		QueuePairs: binary.LittleEndian.Uint16(b[16:]),
	}
	copy(st.MAC[:], b[8:14])
	if res := binary.LittleEndian.Uint16(b[18:]); res != 0 {
		return nil, stateErr(ErrStateField, "config reserved %#x, want 0", res)
	}
	if st.QueuePairs == 0 {
		return nil, stateErr(ErrStateField, "queue_pairs 0")
	}
	return st, nil
}

func decodeFrames(b []byte, pairs uint16) ([]StateFrame, error) {
	r := &stateReader{b: b}
	cb, err := r.take(4, "frame count")
	if err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(cb)
	if n == 0 || n > MaxStateFrames {
		return nil, stateErr(ErrStateTooLarge, "frame count %d outside 1..%d", n, MaxStateFrames)
	}
	frames := make([]StateFrame, n)
	total := 0
	for i := range frames {
		h, err := r.take(frameHdrLen, fmt.Sprintf("frame %d header", i))
		if err != nil {
			return nil, err
		}
		pair, size := binary.LittleEndian.Uint16(h), binary.LittleEndian.Uint32(h[2:])
		if pair >= pairs {
			return nil, stateErr(ErrStateField, "frame %d: queue pair %d, the device had %d", i, pair, pairs)
		}
		if size == 0 || size > MaxStateFrame {
			return nil, stateErr(ErrStateField, "frame %d: length %d outside 1..%d", i, size, MaxStateFrame)
		}
		if total += int(size); total > MaxStateFrameBytes {
			return nil, stateErr(ErrStateTooLarge, "frames past %d bytes", MaxStateFrameBytes)
		}
		data, err := r.take(int(size), fmt.Sprintf("frame %d", i))
		if err != nil {
			return nil, err
		}
		frames[i] = StateFrame{Pair: pair, Data: data}
	}
	if r.off != len(b) {
		return nil, stateErr(ErrStateSection, "frames section has %d bytes after its %d frames", len(b)-r.off, n)
	}
	return frames, nil
}
