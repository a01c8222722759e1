package vhosttest

import (
	"fmt"
	"io"
	"os"

	"github.com/vhostd/vhostd/vhost"
	"golang.org/x/sys/unix"
)

// The device state transfer as QEMU runs it (hw/virtio/vhost.c): a pipe,
// one end sent with SET_DEVICE_STATE_FD (direction 0 save, 1 load; phase 0
// stopped), the stream moved through the other end to EOF, then
// CHECK_DEVICE_STATE.

// TransferState encodes SET_DEVICE_STATE_FD's payload.
func TransferState(dir, phase uint32) []byte {
	b := make([]byte, 8)
	le.PutUint32(b, dir)
	le.PutUint32(b[4:], phase)
	return b
}

// startTransfer sends SET_DEVICE_STATE_FD with fd and checks the reply:
// accepted, the back-end using the fd it was given (0x100).
func (f *FrontEnd) startTransfer(dir uint32, fd int) error {
	r, err := f.Call(vhost.ReqSetDeviceStateFd, 0, TransferState(dir, 0), fd)
	if err != nil {
		return err
	}
	if v, err := r.U64(); err != nil || v != 0x100 {
		return fmt.Errorf("SET_DEVICE_STATE_FD reply %#x (%v), want 0x100", v, err)
	}
	return nil
}

// CheckState sends CHECK_DEVICE_STATE and returns its u64 (0: success).
func (f *FrontEnd) CheckState() (uint64, error) {
	r, err := f.Call(vhost.ReqCheckDeviceState, 0, nil)
	if err != nil {
		return 0, err
	}
	return r.U64()
}

func statePipe() (r, w *os.File, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(p[0]), "state-r"), os.NewFile(uintptr(p[1]), "state-w"), nil
}

// SaveState saves the back-end's state: it returns the stream read to EOF
// and CHECK_DEVICE_STATE's answer.
func (f *FrontEnd) SaveState() ([]byte, uint64, error) {
	r, w, err := statePipe()
	if err != nil {
		return nil, 0, err
	}
	defer r.Close()
	err = f.startTransfer(0, int(w.Fd()))
	w.Close()
	if err != nil {
		return nil, 0, err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, 0, err
	}
	v, err := f.CheckState()
	return data, v, err
}

// LoadState loads data into the back-end and returns CHECK_DEVICE_STATE's
// answer. Write errors are ignored: a back-end that refuses an oversized
// stream stops reading it.
func (f *FrontEnd) LoadState(data []byte) (uint64, error) {
	r, w, err := statePipe()
	if err != nil {
		return 0, err
	}
	err = f.startTransfer(1, int(r.Fd()))
	r.Close()
	if err != nil {
		w.Close()
		return 0, err
	}
	w.Write(data)
	w.Close()
	return f.CheckState()
}
