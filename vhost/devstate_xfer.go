package vhost

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// StateMigrator is implemented by devices that carry state of their own
// across a migration. vhost offers VHOST_USER_PROTOCOL_F_DEVICE_STATE only
// for such devices; QEMU (10.0 on, for virtio-net) then moves the state
// through SET_DEVICE_STATE_FD and CHECK_DEVICE_STATE while the device is
// stopped (vhost-user.rst, "Migrating back-end state").
type StateMigrator interface {
	// SaveState returns the device's state. Every ring is stopped. What
	// it returns must pass EncodeDeviceState's checks.
	SaveState() (*DeviceState, error)
	// LoadState applies a decoded, validated state, with every ring
	// stopped. It checks st against the device first and applies nothing
	// if it returns an error.
	LoadState(st *DeviceState) error
}

// SET_DEVICE_STATE_FD's payload and reply.
const (
	deviceStateSize = 8 // direction u32, phase u32
	stateDirSave    = 0
	stateDirLoad    = 1
	statePhaseStop  = 0
	// stateNoFd in the reply says the back-end uses the fd it was given.
	stateNoFd = 1 << 8
)

// stateIOTimeout bounds a transfer: the pipe's other end is QEMU's, which
// reads (or writes) it while we write (or read). A transfer still going
// after it is abandoned, and CHECK_DEVICE_STATE waits no longer.
var stateIOTimeout = 30 * time.Second

// stateXfer is a transfer under way: a goroutine moves the bytes through
// f and sends its result on done.
type stateXfer struct {
	dir  uint32
	f    *os.File
	done chan stateResult
}

type stateResult struct {
	st     *DeviceState // load: the decoded state
	frames int
	bytes  int
	err    error
}

func (s *session) migrator() (StateMigrator, bool) {
	m, ok := s.dev.(StateMigrator)
	return m, ok
}

// setDeviceStateFd starts a transfer in either direction. The reply is
// sent at once and the bytes move in a goroutine: QEMU reads (save) or
// writes (load) the pipe only after the reply, and sends nothing else
// until it has reached the end.
func (s *session) setDeviceStateFd(m *Msg) ([]byte, error) {
	dir, phase := le.Uint32(m.Payload), le.Uint32(m.Payload[4:])
	if dir != stateDirSave && dir != stateDirLoad {
		return nil, reject("direction", "%d: 0 (save) or 1 (load)", dir)
	}
	if phase != statePhaseStop {
		return nil, reject("phase", "%d: only 0 (stopped) exists", phase)
	}
	mg, ok := s.migrator()
	if !ok {
		return nil, reject("protocol_features", "the device has no state to transfer")
	}
	if s.anyStarted() {
		return nil, reject("phase", "rings are running; the state moves only while the device is stopped")
	}
	var data []byte
	var frames int
	if dir == stateDirSave {
		st, err := mg.SaveState()
		if err == nil {
			data, err = EncodeDeviceState(st)
		}
		if err != nil {
			return nil, reject("state", "save: %v", err)
		}
		frames = len(st.Frames)
	}
	f, err := stateFile(m.takeFd(0))
	if err != nil {
		return nil, reject("fds", "%v", err)
	}
	// A new transfer ends the one before (vhost-user.rst).
	s.abortXfer()
	x := &stateXfer{dir: dir, f: f, done: make(chan stateResult, 1)}
	if dir == stateDirSave {
		go x.save(data, frames)
	} else {
		go x.load()
	}
	s.xfer = x
	s.log.Info("device state transfer started", "direction", stateDirName(dir), "bytes", len(data), "frames", frames)
	return u64Bytes(stateNoFd), nil
}

func stateDirName(dir uint32) string {
	if dir == stateDirSave {
		return "save"
	}
	return "load"
}

// stateFile makes fd a non-blocking *os.File, so that deadlines bound
// its I/O.
func stateFile(fd int) (*os.File, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("state fd: %v", err)
	}
	f := os.NewFile(uintptr(fd), "device-state")
	f.SetDeadline(time.Now().Add(stateIOTimeout)) // regular files have none and never block
	return f, nil
}

func (x *stateXfer) save(data []byte, frames int) {
	_, err := x.f.Write(data)
	if cerr := x.f.Close(); err == nil && cerr != nil && !errors.Is(cerr, os.ErrClosed) {
		err = cerr
	}
	if err != nil {
		err = fmt.Errorf("writing %d bytes of state: %w", len(data), err)
	}
	x.done <- stateResult{frames: frames, bytes: len(data), err: err}
}

// load reads to EOF, at most one byte past the longest valid stream, then
// decodes. The fd is closed as soon as reading stops, so that a front-end
// still writing an oversized stream gets EPIPE instead of blocking.
func (x *stateXfer) load() {
	data, err := io.ReadAll(io.LimitReader(x.f, maxStateStream+1))
	x.f.Close()
	var r stateResult
	switch {
	case err != nil:
		r.err = fmt.Errorf("reading state: %w", err)
	case len(data) > maxStateStream:
		r.err = stateErr(ErrStateTooLarge, "stream longer than %d bytes", maxStateStream)
	default:
		r.st, r.err = DecodeDeviceState(data)
	}
	if r.st != nil {
		r.frames = len(r.st.Frames)
	}
	r.bytes = len(data)
	x.done <- r
}

// wait returns the transfer's result, abandoning it after stateIOTimeout.
func (x *stateXfer) wait() stateResult {
	select {
	case r := <-x.done:
		return r
	case <-time.After(stateIOTimeout):
		x.f.Close()
		r := <-x.done
		r.err = fmt.Errorf("transfer not finished after %v: %v", stateIOTimeout, r.err)
		return r
	}
}

// abortXfer ends a transfer under way, if any (disconnect, reset, a new
// SET_DEVICE_STATE_FD).
func (s *session) abortXfer() {
	if x := s.xfer; x != nil {
		s.xfer = nil
		x.f.Close()
		<-x.done
	}
}

// checkDeviceState reports how the transfer went: 0 when the state was
// written whole (save) or read, decoded, validated and applied (load). A
// refused state leaves the device as it was; the reason is logged.
func (s *session) checkDeviceState(*Msg) ([]byte, error) {
	x := s.xfer
	if x == nil {
		return nil, reject("request", "CHECK_DEVICE_STATE with no transfer (SET_DEVICE_STATE_FD) before it")
	}
	s.xfer = nil
	r := x.wait()
	if r.err == nil && x.dir == stateDirLoad {
		mg, _ := s.migrator()
		if s.anyStarted() {
			r.err = errors.New("rings started during the transfer")
		} else {
			r.err = mg.LoadState(r.st)
		}
	}
	if r.err != nil {
		s.log.Error("device state transfer failed", "direction", stateDirName(x.dir), "bytes", r.bytes, "error", r.err)
		return nil, reject("state", "%s: %v", stateDirName(x.dir), r.err)
	}
	s.log.Info("device state transferred", "direction", stateDirName(x.dir), "bytes", r.bytes, "frames", r.frames)
	return u64Bytes(0), nil
}
