"""Socket constants of the x86-64 Linux uapi (linux/socket.h, linux/in.h, linux/tcp.h,
asm-generic/socket.h, linux/netlink.h) and the layouts of the structures system
calls exchange with the guest. Kept here rather than in ``abi/linux.py`` because
only the socket layer speaks them.
"""

from __future__ import annotations

import struct

# ---- address families
AF_UNSPEC = 0
AF_UNIX = 1
AF_INET = 2
AF_INET6 = 10
AF_NETLINK = 16
AF_PACKET = 17
AF_MAX = 46

# ---- socket types (the low 4 bits of socket(2)'s type) and their flags
SOCK_STREAM = 1
SOCK_DGRAM = 2
SOCK_RAW = 3
SOCK_RDM = 4
SOCK_SEQPACKET = 5
SOCK_DCCP = 6
SOCK_PACKET = 10
SOCK_MAX = 11
SOCK_TYPE_MASK = 0xF
SOCK_NONBLOCK = 0o4000
SOCK_CLOEXEC = 0o2000000

# ---- protocols
IPPROTO_IP = 0
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPPROTO_ICMPV6 = 58
IPPROTO_RAW = 255
NETLINK_ROUTE = 0

# ---- levels
SOL_SOCKET = 1
SOL_IP = 0
SOL_TCP = 6
SOL_UDP = 17
SOL_IPV6 = 41

# ---- SOL_SOCKET options (asm-generic/socket.h)
SO_DEBUG = 1
SO_REUSEADDR = 2
SO_TYPE = 3
SO_ERROR = 4
SO_DONTROUTE = 5
SO_BROADCAST = 6
SO_SNDBUF = 7
SO_RCVBUF = 8
SO_KEEPALIVE = 9
SO_OOBINLINE = 10
SO_NO_CHECK = 11
SO_PRIORITY = 12
SO_LINGER = 13
SO_BSDCOMPAT = 14
SO_REUSEPORT = 15
SO_PASSCRED = 16
SO_PEERCRED = 17
SO_RCVLOWAT = 18
SO_SNDLOWAT = 19
SO_RCVTIMEO_OLD = 20
SO_SNDTIMEO_OLD = 21
SO_BINDTODEVICE = 25
SO_TIMESTAMP_OLD = 29
SO_ACCEPTCONN = 30
SO_PEERSEC = 31
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
SO_PASSSEC = 34
SO_MARK = 36
SO_PROTOCOL = 38
SO_DOMAIN = 39
SO_RXQ_OVFL = 40
SO_PEEK_OFF = 42
SO_BUSY_POLL = 46
SO_INCOMING_CPU = 49
SO_RCVTIMEO_NEW = 66
SO_SNDTIMEO_NEW = 67

# ---- SOL_TCP options
TCP_NODELAY = 1
TCP_MAXSEG = 2
TCP_CORK = 3
TCP_KEEPIDLE = 4
TCP_KEEPINTVL = 5
TCP_KEEPCNT = 6
TCP_SYNCNT = 7
TCP_LINGER2 = 8
TCP_DEFER_ACCEPT = 9
TCP_WINDOW_CLAMP = 10
TCP_INFO = 11
TCP_QUICKACK = 12
TCP_CONGESTION = 13
TCP_USER_TIMEOUT = 18
TCP_FASTOPEN = 23
TCP_NOTSENT_LOWAT = 25

# ---- SOL_IP options
IP_TOS = 1
IP_TTL = 2
IP_HDRINCL = 3
IP_OPTIONS = 4
IP_RECVERR = 11
IP_PKTINFO = 8
IP_RECVTTL = 12
IP_RECVTOS = 13
IP_MTU_DISCOVER = 10
IP_MTU = 14
IP_FREEBIND = 15
IP_MULTICAST_IF = 32
IP_MULTICAST_TTL = 33
IP_MULTICAST_LOOP = 34
IP_ADD_MEMBERSHIP = 35
IP_DROP_MEMBERSHIP = 36
IP_BIND_ADDRESS_NO_PORT = 24

# ---- SOL_IPV6 options
IPV6_UNICAST_HOPS = 16
IPV6_MULTICAST_IF = 17
IPV6_MULTICAST_HOPS = 18
IPV6_MULTICAST_LOOP = 19
IPV6_JOIN_GROUP = 20
IPV6_LEAVE_GROUP = 21
IPV6_MTU_DISCOVER = 23
IPV6_MTU = 24
IPV6_RECVERR = 25
IPV6_V6ONLY = 26
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
IPV6_TCLASS = 67

# ---- msg flags
MSG_OOB = 0x1
MSG_PEEK = 0x2
MSG_DONTROUTE = 0x4
MSG_CTRUNC = 0x8
MSG_TRUNC = 0x20
MSG_DONTWAIT = 0x40
MSG_EOR = 0x80
MSG_WAITALL = 0x100
MSG_CONFIRM = 0x800
MSG_ERRQUEUE = 0x2000
MSG_NOSIGNAL = 0x4000
MSG_MORE = 0x8000
MSG_WAITFORONE = 0x10000
MSG_FASTOPEN = 0x20000000
MSG_CMSG_CLOEXEC = 0x40000000

# ---- ancillary data
SCM_RIGHTS = 1
SCM_CREDENTIALS = 2
SCM_MAX_FD = 253

# ---- shutdown(2)
SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2

# ---- sizes
SOCKADDR_STORAGE = 128
SUN_PATH_MAX = 108
SUN_PATH_OFFSET = 2
SOMAXCONN = 4096

# ---- structures (x86-64)
# struct msghdr { void *msg_name; int msg_namelen; struct iovec *msg_iov;
#   size_t msg_iovlen; void *msg_control; size_t msg_controllen; int msg_flags; };
MSGHDR = struct.Struct("<QI4xQQQQi4x")
# struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
MMSGHDR_SIZE = 64
MSG_LEN_OFFSET = 56
# struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; };
CMSGHDR = struct.Struct("<QiI")
# struct ucred { pid_t pid; uid_t uid; gid_t gid; };
UCRED = struct.Struct("<iII")
# struct linger { int l_onoff; int l_linger; };
LINGER = struct.Struct("<ii")
# struct timeval / __kernel_sock_timeval on x86-64 { long tv_sec; long tv_usec; };
TIMEVAL = struct.Struct("<qq")
assert MSGHDR.size == 56 and CMSGHDR.size == 16


def cmsg_align(n: int) -> int:
    return (n + 7) & ~7


def cmsg_space(n: int) -> int:
    return CMSGHDR.size + cmsg_align(n)


def cmsg_len(n: int) -> int:
    return CMSGHDR.size + n
