# moto's S3 server with a CompleteMultipartUpload that takes C2S_MOTO_COMPLETE_DELAY_S seconds
# between consuming the upload and storing the object. In that window the upload is no longer
# listed, AbortMultipartUpload answers NoSuchUpload, and the object is not there yet: what a client
# sees of AWS's own Complete, which "could take several minutes to finalize" (AWS S3 API
# Reference, CompleteMultipartUpload). moto's complete_multipart_upload (moto/s3/models.py) deletes
# the upload, then calls put_object(..., multipart=...): the sleep goes in front of that call.
import os
import sys
import time

from moto.s3 import models

DELAY = float(os.environ.get("C2S_MOTO_COMPLETE_DELAY_S", "0"))
_put_object = models.S3Backend.put_object


def put_object(self, *args, **kwargs):
    if kwargs.get("multipart") is not None and DELAY > 0:
        time.sleep(DELAY)  # releases the GIL: moto's other request threads go on
    return _put_object(self, *args, **kwargs)


models.S3Backend.put_object = put_object

from moto.server import main  # noqa: E402

main(sys.argv[1:])
