package vhost_test

// Replays the control-socket traces of real front-ends (QEMU 10, QEMU 7.2,
// DPDK virtio-user) from testdata/traces against a Server with a
// NullDevice. testdata/traces/README.md lists every deliberate difference
// between our answers and the recorded back-end's (DPDK testpmd).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vhostd/vhostd/vhost"
	"github.com/vhostd/vhostd/vhost/vhosttest"
	"golang.org/x/sys/unix"
)

type traceRec struct {
	Seq     int             `json:"seq"`
	Event   string          `json:"event"`
	Conn    int             `json:"conn"`
	Dir     string          `json:"dir"`
	Req     uint32          `json:"req"`
	Name    string          `json:"name"`
	Flags   string          `json:"flags"`
	Size    int             `json:"size"`
	Nfds    int             `json:"nfds"`
	Payload json.RawMessage `json:"payload"`
}

// field reads a payload field written either as a JSON number or as a
// hex string.
func field(t *testing.T, p map[string]any, k string) uint64 {
	t.Helper()
	switch v := p[k].(type) {
	case json.Number:
		n, err := strconv.ParseUint(v.String(), 10, 64)
		if err != nil {
			t.Fatalf("payload %s: %v", k, err)
		}
		return n
	case string:
		n, err := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 64)
		if err != nil {
			t.Fatalf("payload %s: %v", k, err)
		}
		return n
	case bool:
		if v {
			return 1
		}
		return 0
	}
	t.Fatalf("payload has no field %q: %v", k, p)
	return 0
}

func loadTrace(t *testing.T, path string) []traceRec {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var recs []traceRec
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var r traceRec
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if r.Dir != "" {
			recs = append(recs, r)
		}
	}
	return recs
}

func TestTraceReplay(t *testing.T) {
	paths, err := filepath.Glob("testdata/traces/*.jsonl")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no traces in testdata/traces: %v", err)
	}
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".jsonl"), func(t *testing.T) {
			replayTrace(t, loadTrace(t, path))
		})
	}
}

// replayer is one replayed connection.
type replayer struct {
	t    *testing.T
	fe   *vhosttest.FrontEnd
	dev  *vhosttest.NullDevice
	name string

	offered, offeredProto uint64
	bases                 map[uint32]uint64 // SET_VRING_BASE per ring
	status                uint64
	skip                  map[uint32]bool // requests whose recorded reply is not ours to check
}

// countingDevice counts ring starts.
type countingDevice struct {
	*vhosttest.NullDevice
	starts atomic.Int64
}

func (c *countingDevice) StartRing(r vhost.RingSpec) error {
	c.starts.Add(1)
	return c.NullDevice.StartRing(r)
}

func replayTrace(t *testing.T, recs []traceRec) {
	dev := vhosttest.NewNullDevice(testFeatures, testVrings)
	cd := &countingDevice{NullDevice: dev}
	l := newListening(t, cd, dev)
	name := uniqueName("replay")
	fdBase := settledFdCount()
	var conns []int
	byConn := map[int][]traceRec{}
	for _, r := range recs {
		if _, ok := byConn[r.Conn]; !ok {
			conns = append(conns, r.Conn)
		}
		byConn[r.Conn] = append(byConn[r.Conn], r)
	}
	kicks := 0
	for _, r := range recs {
		if r.Dir == "fe->be" && vhost.Request(r.Req) == vhost.ReqSetVringKick {
			kicks++
		}
	}
	for _, c := range conns {
		rp := &replayer{t: t, fe: l.dial(t, name), dev: dev, name: name, bases: map[uint32]uint64{}, skip: map[uint32]bool{}}
		for _, r := range byConn[c] {
			if r.Dir == "fe->be" {
				rp.send(r)
			} else {
				rp.check(r)
			}
		}
		// No reply of ours is left unread: the next one answers this.
		if err := rp.fe.Sync(); err != nil {
			t.Fatalf("conn %d: after the last message: %v", c, err)
		}
		rp.fe.Close()
	}
	waitFdCount(t, fdBase, "after the replay")
	waitMaps(t, name, "after the replay")
	// Nothing was refused: messages without NEED_REPLY would fail
	// silently, so the log and the ring starts tell.
	if strings.Contains(l.logs.String(), "rejected") {
		t.Fatalf("the replay had messages rejected:\n%s", l.logs.String())
	}
	if n := cd.starts.Load(); n != int64(kicks) {
		t.Fatalf("%d rings started for %d SET_VRING_KICK messages", n, kicks)
	}
}

func (rp *replayer) payload(r traceRec) map[string]any {
	if len(r.Payload) == 0 || string(r.Payload) == "null" {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(r.Payload))
	d.UseNumber()
	var p map[string]any
	if err := d.Decode(&p); err != nil {
		rp.t.Fatalf("seq %d: payload: %v", r.Seq, err)
	}
	return p
}

// send re-encodes one recorded front-end message, with fresh fds.
func (rp *replayer) send(r traceRec) {
	t := rp.t
	t.Helper()
	req := vhost.Request(r.Req)
	flags, err := strconv.ParseUint(strings.TrimPrefix(r.Flags, "0x"), 16, 32)
	if err != nil {
		t.Fatalf("seq %d: flags %q", r.Seq, r.Flags)
	}
	p := rp.payload(r)
	f := func(k string) uint64 { return field(t, p, k) }
	var body []byte
	var fds []int
	switch req {
	case vhost.ReqSetBackendReqFd:
		// BACKEND_REQ is not offered: the masked SET_PROTOCOL_FEATURES
		// does not contain it, and QEMU would not send this message.
		rp.skip[r.Req] = true
		return
	case vhost.ReqGetFeatures, vhost.ReqGetProtocolFeatures, vhost.ReqGetQueueNum, vhost.ReqGetStatus,
		vhost.ReqSetOwner, vhost.ReqResetOwner, vhost.ReqResetDevice:
	case vhost.ReqSetFeatures:
		// Masked to what we offered, as QEMU would have acked.
		body = u64(f("features") & rp.offered)
	case vhost.ReqSetProtocolFeatures:
		body = u64(f("protocol_features") & rp.offeredProto)
	case vhost.ReqSetVringNum, vhost.ReqSetVringEnable, vhost.ReqGetVringBase:
		body = vstate(uint32(f("index")), uint32(f("num")))
	case vhost.ReqSetVringBase:
		body = vstate(uint32(f("index")), uint32(f("num")))
		rp.bases[uint32(f("index"))] = f("num")
	case vhost.ReqSetVringAddr:
		body = vhosttest.VringAddr(uint32(f("index")), uint32(f("flags")), f("desc"), f("used"), f("avail"), f("log"))
	case vhost.ReqSetVringKick, vhost.ReqSetVringCall, vhost.ReqSetVringErr:
		body = u64(f("u64"))
		if f("nofd") == 0 {
			fd, err := vhosttest.NewEventfd()
			if err != nil {
				t.Fatal(err)
			}
			fds = append(fds, fd)
		}
	case vhost.ReqSetMemTable:
		regs, _ := p["regions"].([]any)
		var descs []vhosttest.RegionDesc
		for _, x := range regs {
			m := x.(map[string]any)
			d := vhosttest.RegionDesc{GPA: field(t, m, "gpa"), Size: field(t, m, "size"), UserAddr: field(t, m, "uaddr"), MmapOffset: field(t, m, "offset")}
			fd, err := vhosttest.NewMemfd(rp.name, d.MmapOffset+d.Size) // sparse
			if err != nil {
				t.Fatal(err)
			}
			descs = append(descs, d)
			fds = append(fds, fd)
		}
		if len(descs) != int(f("nregions")) {
			t.Fatalf("seq %d: %d regions decoded, nregions %d", r.Seq, len(descs), f("nregions"))
		}
		body = vhosttest.MemTable(descs...)
	case vhost.ReqSetStatus:
		body = u64(f("status"))
		rp.status = f("status")
	case vhost.ReqNetSetMTU:
		body = u64(f("u64"))
	default:
		t.Fatalf("seq %d: no re-encoder for %v", r.Seq, req)
	}
	if len(body) != r.Size || len(fds) != r.Nfds {
		t.Fatalf("seq %d %v: re-encoded %d bytes and %d fds, recorded %d and %d", r.Seq, req, len(body), len(fds), r.Size, r.Nfds)
	}
	err = rp.fe.SendRaw(vhosttest.Header{Req: r.Req, Flags: uint32(flags), Size: uint32(len(body))}, body, fds)
	for _, fd := range fds {
		unix.Close(fd)
	}
	if err != nil {
		t.Fatalf("seq %d %v: %v", r.Seq, req, err)
	}
}

// check reads our reply to a recorded back-end reply and compares.
func (rp *replayer) check(r traceRec) {
	t := rp.t
	t.Helper()
	if rp.skip[r.Req] {
		delete(rp.skip, r.Req)
		return
	}
	req := vhost.Request(r.Req)
	got, err := rp.fe.ReadReply()
	if err != nil {
		t.Fatalf("seq %d: recorded a %v reply, we sent none: %v", r.Seq, req, err)
	}
	if got.Req != req || got.Flags != vhosttest.FlagVersion|vhosttest.FlagReply {
		t.Fatalf("seq %d: recorded a %v reply, ours is %v flags %#x", r.Seq, req, got.Req, got.Flags)
	}
	p := rp.payload(r)
	if _, ok := p["ack"]; ok {
		v, err := got.U64()
		if err != nil || v != field(t, p, "ack") {
			t.Fatalf("seq %d %v: REPLY_ACK %d (%v), recorded %d", r.Seq, req, v, err, field(t, p, "ack"))
		}
		return
	}
	var want uint64
	switch req {
	case vhost.ReqGetFeatures:
		// Ours, not DPDK's: what vhostd offers.
		want = testFeatures | 1<<vhost.FeatProtocolFeatures
		v, _ := got.U64()
		rp.offered = v
	case vhost.ReqGetProtocolFeatures:
		v, _ := got.U64()
		rp.offeredProto = v
		want = v
		if v&(1<<vhost.ProtoBackendReq|1<<vhost.ProtoLogShmfd|1<<vhost.ProtoInflightShmfd) != 0 {
			t.Fatalf("protocol features %#x offer something vhostd does not implement", v)
		}
	case vhost.ReqGetQueueNum:
		want = testVrings / 2
	case vhost.ReqGetStatus:
		// Our answer is the last SET_STATUS; it matches the recording too.
		want = rp.status
		if rec := field(t, p, "status"); rec != want {
			t.Fatalf("seq %d: recorded GET_STATUS %d, the last SET_STATUS was %d", r.Seq, rec, want)
		}
	case vhost.ReqGetVringBase:
		// A NullDevice hands back the base it was started with; the
		// recorded value came from DPDK's live data path.
		idx := uint32(field(t, p, "index"))
		if len(got.Payload) != 8 || le32(got.Payload) != idx || uint64(le32(got.Payload[4:])) != rp.bases[idx] {
			t.Fatalf("seq %d: GET_VRING_BASE(%d) reply %x, want base %d", r.Seq, idx, got.Payload, rp.bases[idx])
		}
		return
	default:
		t.Fatalf("seq %d: no check for a %v reply", r.Seq, req)
	}
	if v, err := got.U64(); err != nil || v != want {
		t.Fatalf("seq %d %v: reply %d (%v), want %d", r.Seq, req, v, err, want)
	}
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
