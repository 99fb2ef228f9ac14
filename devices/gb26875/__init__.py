"""GB/T 26875.3-2011, the protocol of user information transmission devices (用户信息传输装置) to
a monitoring centre: frames (frame.py), application data units (units.py), a stream reader
that resynchronises (stream.py) and what the bits mean (codes.py)."""
