/* Network guard for the Open WebUI test: an LD_PRELOAD shim that records every outgoing connection attempt and
 * every name lookup of the process it is loaded into (and of its children, which inherit LD_PRELOAD), so that a
 * test can fail on any destination but its own. There is no internet on the test machines: a connection to the
 * outside fails there without a word, unless it is recorded.
 *
 * One line per event is appended to the file named by NETGUARD_LOG (one write(2) of a whole line on a file opened
 * with O_APPEND, so the lines of concurrent threads and processes do not mix):
 *   <pid> connect inet|inet6 <address> <port> tcp|udp    connect(2); other families than unix and netlink
 *                                                         as "family <n>"
 *   <pid> sendto|sendmsg inet|inet6 <address> <port> ...  sendto, sendmsg, sendmmsg that carry a destination
 *   <pid> send inet|inet6 <address> <port> udp            send(2) on a connected UDP socket, with its peer
 *   <pid> lookup <function> <name> <service>              getaddrinfo, gethostbyname, gethostbyname2 (and _r)
 *   <pid> reverse <function> <address>                    gethostbyaddr(_r), getnameinfo without NI_NUMERICHOST
 * The real call always follows: the shim watches, it blocks nothing.
 *
 * What it cannot see: calls that do not go through the dynamic symbol (a statically linked binary, raw syscall(2),
 * io_uring), write(2) on a connected UDP socket, and glibc's own internal calls (the resolver's connect to the
 * nameserver is inside libc: the lookup itself is what is recorded). c-ares, which does its own DNS, calls
 * connect() through the dynamic symbol and is seen.
 *
 * Build: gcc -shared -fPIC -O2 -o netguard.so netguard.c -ldl
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void record(const char *fmt, ...) {
    const char *path = getenv("NETGUARD_LOG");
    if (path == NULL || *path == '\0') return;
    int saved = errno;
    char line[1024];
    int n = snprintf(line, sizeof line, "%d ", (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2) len = sizeof line - 2;
    /* one line per event, whatever the name holds */
    for (size_t i = 0; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r') line[i] = '?';
    line[len++] = '\n';
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        ssize_t ignored = write(fd, line, len);
        (void)ignored;
        close(fd);
    }
    errno = saved;
}

/* tcp, udp or the socket type's number: a connect() of a UDP socket sends nothing by itself */
static const char *transport(int fd) {
    static const char *names[] = {"?", "tcp", "udp", "raw"};
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type < 0 || type > 3) return "?";
    return names[type];
}

static void record_address(const char *what, int fd, const struct sockaddr *sa, socklen_t len) {
    if (sa == NULL || len < (socklen_t)sizeof(sa_family_t)) return;
    char text[INET6_ADDRSTRLEN];
    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
        record("%s inet %s %u %s", what, text, (unsigned)ntohs(in->sin_port), transport(fd));
        break;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
        record("%s inet6 %s %u %s", what, text, (unsigned)ntohs(in6->sin6_port), transport(fd));
        break;
    }
    case AF_UNIX:    /* a local socket, not a network destination */
    case AF_NETLINK: /* the kernel (interface lists) */
    case AF_UNSPEC:  /* connect(AF_UNSPEC) dissolves an association */
        break;
    default:
        record("%s family %d %s", what, (int)sa->sa_family, transport(fd));
    }
}

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    record_address("connect", fd, addr, len);
    return REAL(connect)(fd, addr, len);
}

/* A datagram on a connected UDP socket goes to its peer: recorded, so a UDP connect() that is only a route
 * lookup (Chromium's IPv6 probe) can be told from one that sends. Stream sockets are not looked at. */
ssize_t send(int fd, const void *buf, size_t n, int flags) {
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_DGRAM) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof peer;
        if (getpeername(fd, (struct sockaddr *)&peer, &peer_len) == 0)
            record_address("send", fd, (struct sockaddr *)&peer, peer_len);
    }
    return REAL(send)(fd, buf, n, flags);
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr, socklen_t len) {
    if (addr != NULL) record_address("sendto", fd, addr, len);
    return REAL(sendto)(fd, buf, n, flags, addr, len);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
    if (msg != NULL && msg->msg_name != NULL) record_address("sendmsg", fd, msg->msg_name, msg->msg_namelen);
    return REAL(sendmsg)(fd, msg, flags);
}

int sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags) {
    for (unsigned int i = 0; vec != NULL && i < vlen; i++)
        if (vec[i].msg_hdr.msg_name != NULL)
            record_address("sendmsg", fd, vec[i].msg_hdr.msg_name, vec[i].msg_hdr.msg_namelen);
    return REAL(sendmmsg)(fd, vec, vlen, flags);
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res) {
    if (node != NULL) record("lookup getaddrinfo %s %s", node, service ? service : "-");
    return REAL(getaddrinfo)(node, service, hints, res);
}

struct hostent *gethostbyname(const char *name) {
    record("lookup gethostbyname %s", name ? name : "");
    return REAL(gethostbyname)(name);
}

struct hostent *gethostbyname2(const char *name, int af) {
    record("lookup gethostbyname2 %s", name ? name : "");
    return REAL(gethostbyname2)(name, af);
}

int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen, struct hostent **result,
                    int *h_errnop) {
    record("lookup gethostbyname_r %s", name ? name : "");
    return REAL(gethostbyname_r)(name, ret, buf, buflen, result, h_errnop);
}

int gethostbyname2_r(const char *name, int af, struct hostent *ret, char *buf, size_t buflen,
                     struct hostent **result, int *h_errnop) {
    record("lookup gethostbyname2_r %s", name ? name : "");
    return REAL(gethostbyname2_r)(name, af, ret, buf, buflen, result, h_errnop);
}

static void record_reverse(const char *function, const void *addr, socklen_t len, int type) {
    char text[INET6_ADDRSTRLEN] = "?";
    if (addr != NULL && ((type == AF_INET && len >= 4) || (type == AF_INET6 && len >= 16)))
        inet_ntop(type, addr, text, sizeof text);
    record("reverse %s %s", function, text);
}

struct hostent *gethostbyaddr(const void *addr, socklen_t len, int type) {
    record_reverse("gethostbyaddr", addr, len, type);
    return REAL(gethostbyaddr)(addr, len, type);
}

int gethostbyaddr_r(const void *addr, socklen_t len, int type, struct hostent *ret, char *buf, size_t buflen,
                    struct hostent **result, int *h_errnop) {
    record_reverse("gethostbyaddr_r", addr, len, type);
    return REAL(gethostbyaddr_r)(addr, len, type, ret, buf, buflen, result, h_errnop);
}

int getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen, char *serv,
                socklen_t servlen, int flags) {
    if (host != NULL && hostlen > 0 && !(flags & NI_NUMERICHOST) && sa != NULL) {
        if (sa->sa_family == AF_INET)
            record_reverse("getnameinfo", &((const struct sockaddr_in *)sa)->sin_addr, 4, AF_INET);
        else if (sa->sa_family == AF_INET6)
            record_reverse("getnameinfo", &((const struct sockaddr_in6 *)sa)->sin6_addr, 16, AF_INET6);
    }
    return REAL(getnameinfo)(sa, salen, host, hostlen, serv, servlen, flags);
}
