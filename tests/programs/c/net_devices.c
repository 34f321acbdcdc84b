/* The loopback device as programs ask about it, printed for a comparison with the native
 * run (tests/tests/linux_edges.rs): glibc's if_nametoindex, if_indextoname, if_nameindex and
 * getifaddrs, the SIOCGIF* ioctls on AF_INET and AF_UNIX sockets, and a NETLINK_ROUTE
 * socket by hand (port ids, a link asked for by index with an acknowledgement, a size
 * peeked with MSG_PEEK|MSG_TRUNC, an address dump, errors, a change refused to a user
 * without CAP_NET_ADMIN). Only what is about `lo` is printed: the host has other devices.
 * Run as root (the refused change runs as nobody). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "show_result.h"

/* The netlink ABI (linux/netlink.h, linux/rtnetlink.h), declared here: musl has no kernel
 * headers. */
struct nl_addr {
    unsigned short family, pad;
    unsigned pid, groups;
};
struct nl_hdr {
    unsigned len;
    unsigned short type, flags;
    unsigned seq, pid;
};
struct if_info {
    unsigned char family, pad;
    unsigned short type;
    int index;
    unsigned flags, change;
};
struct if_addr {
    unsigned char family, prefixlen, flags, scope;
    unsigned index;
};
struct rt_attr {
    unsigned short len, type;
};
#define NL_ALIGN(n) (((n) + 3u) & ~3u)
enum {
    NETLINK_ROUTE = 0,
    NLM_F_REQUEST = 1,
    NLM_F_ACK = 4,
    NLM_F_DUMP = 0x300,
    NLM_F_CREATE = 0x400,
    NLMSG_ERROR = 2,
    NLMSG_DONE = 3,
    RTM_NEWLINK = 16,
    RTM_GETLINK = 18,
    RTM_NEWADDR = 20,
    RTM_GETADDR = 22,
    IFLA_IFNAME = 3,
    IFLA_MTU = 4,
    IFA_ADDRESS = 1,
};

/* The attributes after a message's fixed part of `fixed` bytes: calls `f` for each. */
static void each_attr(struct nl_hdr *h, unsigned fixed, void (*f)(struct rt_attr *, void *),
                      void *arg) {
    char *p = (char *)h + NL_ALIGN(sizeof *h) + NL_ALIGN(fixed), *end = (char *)h + h->len;
    while (p + sizeof(struct rt_attr) <= end) {
        struct rt_attr *a = (struct rt_attr *)p;
        if (a->len < sizeof *a || p + a->len > end)
            break;
        f(a, arg);
        p += NL_ALIGN(a->len);
    }
}

static void link_attr(struct rt_attr *a, void *arg) {
    (void)arg;
    if (a->type == IFLA_IFNAME)
        printf(" name %s", (char *)(a + 1));
    if (a->type == IFLA_MTU)
        printf(" mtu %u", *(unsigned *)(a + 1));
}

static void addr_attr(struct rt_attr *a, void *family) {
    char t[64];
    if (a->type == IFA_ADDRESS && inet_ntop(*(int *)family, a + 1, t, sizeof t))
        printf(" address %s", t);
}

static void addr_text(const struct sockaddr *sa, char *out, size_t n) {
    if (!sa)
        snprintf(out, n, "-");
    else if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, n);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, n);
    else
        snprintf(out, n, "family %d", sa->sa_family);
}

static void libc_calls(void) {
    show("if_nametoindex lo", if_nametoindex("lo"));
    char name[IF_NAMESIZE];
    printf("if_indextoname 1: %s\n", if_indextoname(1, name) ? name : "(none)");
    show("if_nametoindex nonexistent0", if_nametoindex("nonexistent0") ? 1 : 0);
    struct if_nameindex *ni = if_nameindex();
    for (struct if_nameindex *i = ni; i && i->if_index; i++)
        if (!strcmp(i->if_name, "lo"))
            printf("if_nameindex: %u %s\n", i->if_index, i->if_name);
    if_freenameindex(ni);
    struct ifaddrs *ifa;
    show("getifaddrs", getifaddrs(&ifa));
    for (struct ifaddrs *a = ifa; a; a = a->ifa_next) {
        if (strcmp(a->ifa_name, "lo"))
            continue;
        char addr[64], mask[64];
        addr_text(a->ifa_addr, addr, sizeof addr);
        addr_text(a->ifa_netmask, mask, sizeof mask);
        printf("getifaddrs lo: flags %#x addr %s mask %s\n", a->ifa_flags, addr, mask);
    }
    freeifaddrs(ifa);
}

static void ioctls(int family) {
    int s = socket(family, SOCK_DGRAM, 0);
    printf("ioctls on family %d\n", family);
    struct ifreq r;
    memset(&r, 0, sizeof r);
    strcpy(r.ifr_name, "lo");
    show("SIOCGIFINDEX", ioctl(s, SIOCGIFINDEX, &r) < 0 ? -1 : r.ifr_ifindex);
    show("SIOCGIFFLAGS", ioctl(s, SIOCGIFFLAGS, &r) < 0 ? -1 : r.ifr_flags);
    show("SIOCGIFMTU", ioctl(s, SIOCGIFMTU, &r) < 0 ? -1 : r.ifr_mtu);
    char t[64];
    /* (The address calls are the family's: AF_INET's.) */
    if (ioctl(s, SIOCGIFADDR, &r) == 0) {
        addr_text(&r.ifr_addr, t, sizeof t);
        printf("SIOCGIFADDR: %s\n", t);
    } else {
        show("SIOCGIFADDR", -1);
    }
    if (ioctl(s, SIOCGIFNETMASK, &r) == 0) {
        addr_text(&r.ifr_netmask, t, sizeof t);
        printf("SIOCGIFNETMASK: %s\n", t);
    } else {
        show("SIOCGIFNETMASK", -1);
    }
    show("SIOCGIFHWADDR", ioctl(s, SIOCGIFHWADDR, &r) < 0 ? -1 : r.ifr_hwaddr.sa_family);
    r.ifr_ifindex = 1;
    memset(r.ifr_name, 0, sizeof r.ifr_name);
    show("SIOCGIFNAME", ioctl(s, SIOCGIFNAME, &r));
    printf("SIOCGIFNAME 1: %s\n", r.ifr_name);
    strcpy(r.ifr_name, "nonexistent0");
    show("SIOCGIFMTU nonexistent0", ioctl(s, SIOCGIFMTU, &r));
    char buf[40 * 64];
    struct ifconf c = {.ifc_len = 0, .ifc_buf = NULL};
    show("SIOCGIFCONF sizing", ioctl(s, SIOCGIFCONF, &c));
    show("sized for whole entries", c.ifc_len > 0 && c.ifc_len % (int)sizeof(struct ifreq) == 0);
    c.ifc_len = sizeof buf;
    c.ifc_buf = buf;
    show("SIOCGIFCONF", ioctl(s, SIOCGIFCONF, &c));
    for (int i = 0; i < c.ifc_len / (int)sizeof(struct ifreq); i++)
        if (!strcmp(c.ifc_req[i].ifr_name, "lo")) {
            addr_text(&c.ifc_req[i].ifr_addr, t, sizeof t);
            printf("SIOCGIFCONF lo: %s\n", t);
        }
    close(s);
}

static int nl_socket(void) {
    int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    struct nl_addr a = {.family = AF_NETLINK};
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0)
        return -1;
    return s;
}

static int nl_pid(int s) {
    struct nl_addr a;
    socklen_t n = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &n);
    return (int)a.pid;
}

/* Sends a request of `type` with `flags`, an ifinfomsg/ifaddrmsg-sized body `body`. */
static void nl_send(int s, int type, int flags, const void *body, size_t len) {
    struct {
        struct nl_hdr h;
        char body[64];
    } q;
    memset(&q, 0, sizeof q);
    q.h.len = sizeof q.h + len;
    q.h.type = type;
    q.h.flags = NLM_F_REQUEST | flags;
    q.h.seq = 77;
    memcpy(q.body, body, len);
    struct nl_addr k = {.family = AF_NETLINK};
    if (sendto(s, &q, q.h.len, 0, (struct sockaddr *)&k, sizeof k) < 0)
        perror("sendto");
}

/* Prints the messages of one datagram read from `s` (those about `lo`); true if it ended a
 * dump. Clears `*ok` if its length peeked with MSG_PEEK|MSG_TRUNC was not its length or it
 * did not come from the kernel. (Where a dump's datagrams end is Linux's choice per kind of
 * object: not printed.) */
static int nl_datagram(int s, int *ok) {
    static char buf[32768];
    long peeked = recv(s, NULL, 0, MSG_PEEK | MSG_TRUNC);
    struct nl_addr from;
    socklen_t fl = sizeof from;
    long n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
    *ok &= peeked == n && n > 0 && from.pid == 0;
    int done = 0;
    for (char *p = buf; n > 0 && p + sizeof(struct nl_hdr) <= buf + n;) {
        struct nl_hdr *h = (struct nl_hdr *)p;
        if (h->len < sizeof *h || p + h->len > buf + n)
            break;
        p += NL_ALIGN(h->len);
        void *data = h + 1;
        if (h->type == RTM_NEWADDR && ((struct if_addr *)data)->index != 1)
            continue;
        printf("  type %d seq %u to us %d", h->type, h->seq, (int)h->pid == nl_pid(s));
        if (h->type == NLMSG_ERROR) {
            errno = -*(int *)data;
            printf(" error %s", errno ? errno_name() : "0");
        } else if (h->type == RTM_NEWLINK) {
            struct if_info *i = data;
            printf(" link %d type %d flags %#x", i->index, i->type, i->flags);
            each_attr(h, sizeof *i, link_attr, NULL);
        } else if (h->type == RTM_NEWADDR) {
            struct if_addr *i = data;
            int family = i->family;
            each_attr(h, sizeof *i, addr_attr, &family);
            printf("/%d scope %d", i->prefixlen, i->scope);
        }
        putchar('\n');
        done |= h->type == NLMSG_DONE;
    }
    return done;
}

/* Reads a single answer (one datagram), or a whole dump. */
static void nl_read(int s, const char *what, int dump) {
    int ok = 1;
    printf("%s:\n", what);
    while (!nl_datagram(s, &ok) && dump)
        ;
    printf("  lengths peeked and from the kernel: %d\n", ok);
}

static void netlink(void) {
    show("stream socket", socket(AF_NETLINK, SOCK_STREAM, NETLINK_ROUTE));
    show("protocol 31", socket(AF_NETLINK, SOCK_RAW, 31));
    int sv[2];
    show("socketpair", socketpair(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE, sv));
    int s = nl_socket();
    show("first port is the pid", nl_pid(s) == getpid());
    int s2 = nl_socket();
    show("second port is negative", nl_pid(s2) < 0);
    struct nl_addr taken = {.family = AF_NETLINK, .pid = (unsigned)getpid()};
    int s3 = socket(AF_NETLINK, SOCK_DGRAM, NETLINK_ROUTE);
    show("bind a port in use", bind(s3, (struct sockaddr *)&taken, sizeof taken));
    int type = -1;
    socklen_t tl = sizeof type;
    getsockopt(s3, SOL_SOCKET, SO_TYPE, &type, &tl);
    show("dgram type", type);
    close(s3);
    close(s2);

    struct if_info ifi = {.family = AF_UNSPEC, .index = 1};
    nl_send(s, RTM_GETLINK, NLM_F_ACK, &ifi, sizeof ifi);
    nl_read(s, "link 1 with an ack", 0);
    nl_read(s, "its ack", 0);
    ifi.index = 999999;
    nl_send(s, RTM_GETLINK, 0, &ifi, sizeof ifi);
    nl_read(s, "link 999999", 0);
    struct if_addr ifa = {.family = AF_INET};
    nl_send(s, RTM_GETADDR, NLM_F_DUMP, &ifa, sizeof ifa);
    nl_read(s, "IPv4 addresses", 1);
    ifa.family = AF_INET6;
    nl_send(s, RTM_GETADDR, NLM_F_DUMP, &ifa, sizeof ifa);
    nl_read(s, "IPv6 addresses", 1);
    show("nothing more", recv(s, NULL, 0, MSG_DONTWAIT));

    /* Requests never read: the answers that do not fit are dropped, the sends succeed, and
     * the next read says ENOBUFS, once, before what was kept. */
    ifi.index = 1;
    int sent = 1;
    for (int i = 0; i < 3000; i++)
        sent &= send(s, &(struct {
                            struct nl_hdr h;
                            struct if_info i;
                        }){{sizeof(struct nl_hdr) + sizeof ifi, RTM_GETLINK, NLM_F_REQUEST, 1, 0}, ifi},
                     sizeof(struct nl_hdr) + sizeof ifi, 0) > 0;
    show("every send succeeded", sent);
    static char drain[65536];
    show("first read", recv(s, drain, sizeof drain, MSG_DONTWAIT));
    long got, kept = 0;
    while ((got = recv(s, drain, sizeof drain, MSG_DONTWAIT)) > 0)
        kept++;
    show("some answers kept", kept > 0 && kept < 3000);
    show("then", got);
    close(s);
}

static void unprivileged(void) {
    if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)) {
        puts("setresuid failed");
        return;
    }
    int s = nl_socket();
    struct if_addr ifa = {.family = AF_INET, .prefixlen = 8, .index = 1};
    nl_send(s, RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE, &ifa, sizeof ifa);
    nl_read(s, "an address added by nobody", 0);
    struct ifreq r;
    memset(&r, 0, sizeof r);
    strcpy(r.ifr_name, "lo");
    r.ifr_mtu = 1500;
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    show("SIOCSIFMTU by nobody", ioctl(u, SIOCSIFMTU, &r));
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    libc_calls();
    ioctls(AF_INET);
    ioctls(AF_UNIX);
    netlink();
    in_child(unprivileged);
    return 0;
}
