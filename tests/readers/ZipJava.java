import java.io.BufferedInputStream;
import java.io.FileInputStream;
import java.io.InputStream;
import java.security.MessageDigest;
import java.util.Enumeration;
import java.util.HexFormat;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;
import java.util.zip.ZipInputStream;

/**
 * Reads a zip with java.util.zip twice: as a stream (ZipInputStream, which reads each local
 * header and data descriptor in order and checks every CRC), and through the central directory
 * (ZipFile). Prints "name size sha256" per entry from each; exits 1 on any error.
 */
public class ZipJava {
    static String digest(InputStream in, long[] size) throws Exception {
        MessageDigest sha = MessageDigest.getInstance("SHA-256");
        byte[] buf = new byte[1 << 16];
        int n;
        while ((n = in.read(buf)) > 0) {
            sha.update(buf, 0, n);
            size[0] += n;
        }
        return HexFormat.of().formatHex(sha.digest());
    }

    public static void main(String[] args) throws Exception {
        try (ZipInputStream zin = new ZipInputStream(new BufferedInputStream(new FileInputStream(args[0])))) {
            ZipEntry e;
            while ((e = zin.getNextEntry()) != null) {
                long[] size = {0};
                String sha = digest(zin, size);
                System.out.println("stream " + e.getName() + " " + size[0] + " " + sha);
            }
        }
        try (ZipFile zf = new ZipFile(args[0])) {
            Enumeration<? extends ZipEntry> entries = zf.entries();
            while (entries.hasMoreElements()) {
                ZipEntry e = entries.nextElement();
                long[] size = {0};
                try (InputStream in = zf.getInputStream(e)) {
                    String sha = digest(in, size);
                    if (size[0] != e.getSize()) {
                        throw new IllegalStateException(e.getName() + ": read " + size[0] + " of " + e.getSize());
                    }
                    System.out.println("central " + e.getName() + " " + size[0] + " " + sha);
                }
            }
        }
    }
}
