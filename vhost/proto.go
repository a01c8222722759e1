package vhost

// Request is a vhost-user front-end request code (vhost-user.rst, "Front-end
// message types"). Codes arrive from an untrusted peer: they are only ever
// compared or looked up in the requests table (requests.go), never used as
// an index.
type Request uint32

// Front-end request codes, numbered as in QEMU's docs/interop/vhost-user.rst.
const (
	ReqGetFeatures         Request = 1
	ReqSetFeatures         Request = 2
	ReqSetOwner            Request = 3
	ReqResetOwner          Request = 4
	ReqSetMemTable         Request = 5
	ReqSetLogBase          Request = 6
	ReqSetLogFd            Request = 7
	ReqSetVringNum         Request = 8
	ReqSetVringAddr        Request = 9
	ReqSetVringBase        Request = 10
	ReqGetVringBase        Request = 11
	ReqSetVringKick        Request = 12
	ReqSetVringCall        Request = 13
	ReqSetVringErr         Request = 14
	ReqGetProtocolFeatures Request = 15
	ReqSetProtocolFeatures Request = 16
	ReqGetQueueNum         Request = 17
	ReqSetVringEnable      Request = 18
	ReqSendRARP            Request = 19
	ReqNetSetMTU           Request = 20
	ReqSetBackendReqFd     Request = 21
	ReqIOTLBMsg            Request = 22
	ReqSetVringEndian      Request = 23
	ReqGetConfig           Request = 24
	ReqSetConfig           Request = 25
	ReqCreateCryptoSession Request = 26
	ReqCloseCryptoSession  Request = 27
	ReqPostcopyAdvise      Request = 28
	ReqPostcopyListen      Request = 29
	ReqPostcopyEnd         Request = 30
	ReqGetInflightFd       Request = 31
	ReqSetInflightFd       Request = 32
	ReqGPUSetSocket        Request = 33
	ReqResetDevice         Request = 34
	ReqVringKick           Request = 35
	ReqGetMaxMemSlots      Request = 36
	ReqAddMemReg           Request = 37
	ReqRemMemReg           Request = 38
	ReqSetStatus           Request = 39
	ReqGetStatus           Request = 40
	ReqGetSharedObject     Request = 41
	ReqSetDeviceStateFd    Request = 42
	ReqCheckDeviceState    Request = 43
)

// Header flag bits (vhost-user.rst, "Header").
const (
	flagVersionMask = 0x3
	flagVersion     = 0x1
	FlagReply       = 1 << 2
	FlagNeedReply   = 1 << 3
	flagKnownMask   = flagVersionMask | FlagReply | FlagNeedReply
)

// Sizes of the wire format.
const (
	headerSize = 12
	// maxPayload bounds every message body we accept; nothing larger is
	// ever allocated (BAD-INPUTS 2). The largest legal request we take is
	// GET/SET_CONFIG with 256 bytes of config space.
	maxPayload = 0x1000
	// maxFds is VHOST_USER_MAX_FDS / VHOST_MEMORY_BASELINE_NREGIONS: the
	// most fds one message may legitimately carry.
	maxFds = 8
	// MaxRegions is the most regions SET_MEM_TABLE may carry.
	MaxRegions = 8
	// MaxMemSlots is what GET_MAX_MEM_SLOTS advertises: QEMU's own limit
	// for vhost-user (VHOST_USER_MAX_RAM_SLOTS).
	MaxMemSlots = 509
	// Payload layouts (vhost-user.rst, "Message types"): a u64; struct
	// vhost_vring_state (u32 index, u32 num); struct vhost_vring_addr (u32
	// index, u32 flags, five u64 addresses); the memory table's header (u32
	// nregions, u32 padding) and its 32-byte regions; a single region
	// behind a u64 of padding (ADD/REM_MEM_REG); the config header (u32
	// offset, size, flags) before up to VHOST_USER_MAX_CONFIG_SIZE bytes.
	u64Size         = 8
	vringStateSize  = 8
	vringAddrSize   = 40
	logBaseSize     = 16 // VhostUserLog: mmap_size, mmap_offset
	memTableHdrSize = 8
	regionSize      = 32
	memRegMsgSize   = 8 + regionSize
	configHdrSize   = 12
	maxConfigSize   = 256
	// SET_VRING_KICK/CALL/ERR's u64: the ring index in bits 0-7, bit 8 set
	// when no fd comes with it.
	vringIndexMask = 0xff
	vringNoFd      = 1 << 8
)

// Protocol feature bits (vhost-user.rst, "Protocol features").
const (
	ProtoMQ                 = 0
	ProtoLogShmfd           = 1
	ProtoRARP               = 2
	ProtoReplyAck           = 3
	ProtoNetMTU             = 4
	ProtoBackendReq         = 5
	ProtoCrossEndian        = 6
	ProtoCryptoSession      = 7
	ProtoPagefault          = 8
	ProtoConfig             = 9
	ProtoBackendSendFd      = 10
	ProtoHostNotifier       = 11
	ProtoInflightShmfd      = 12
	ProtoResetDevice        = 13
	ProtoInbandNotification = 14
	ProtoConfigureMemSlots  = 15
	ProtoStatus             = 16
	ProtoDeviceState        = 19
)

// Virtio and vhost feature bits that the protocol layer itself cares about.
const (
	// FeatProtocolFeatures is VHOST_USER_F_PROTOCOL_FEATURES (vhost-user.rst).
	FeatProtocolFeatures = 30
	// FeatLogAll is VHOST_F_LOG_ALL (include/uapi/linux/vhost.h).
	FeatLogAll = 26
	// Ring features (include/uapi/linux/virtio_ring.h, virtio_config.h).
	FeatRingIndirectDesc = 28
	FeatRingEventIdx     = 29
	FeatVersion1         = 32
	FeatIOMMUPlatform    = 33
	FeatRingPacked       = 34
	FeatInOrder          = 35
)

// baseProtocolFeatures are the protocol features vhost implements itself,
// whatever the device: the device adds MQ, NET_MTU, RARP or CONFIG through
// Device.ProtocolFeatures.
const baseProtocolFeatures = 1<<ProtoReplyAck | 1<<ProtoResetDevice | 1<<ProtoConfigureMemSlots | 1<<ProtoStatus

func bit(n uint) uint64 { return 1 << n }
