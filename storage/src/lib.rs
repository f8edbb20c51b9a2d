//! The segment-file log on io_uring (see issue: storage). Empty until it lands.
