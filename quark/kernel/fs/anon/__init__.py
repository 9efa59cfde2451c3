"""Files without a path: eventfd, timerfd, signalfd, epoll (anon_inode:[...]) and memfd."""
