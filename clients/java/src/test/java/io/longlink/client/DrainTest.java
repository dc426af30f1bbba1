package io.longlink.client;

import static io.longlink.client.Harness.api;
import static io.longlink.client.Harness.eventually;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

/** A drained node's devices follow its redirect to another node of a cluster (real redis-server and nats-server). */
class DrainTest {
    @Test
    void aRedirectIsFollowedAndNothingStoredIsLost() throws Exception {
        try (Harness.Engines engines = new Harness.Engines();
                Harness.Server n1 = Harness.startNode("n1", "", engines.cluster + ",\"gateway\":{\"drain_period\":\"1s\"}");
                Harness.Server n2 = Harness.startNode("n2", "", engines.cluster + ",\"gateway\":{\"drain_period\":\"1s\"}")) {
            String device = Harness.deviceId();
            ClientTest.Recorder r = new ClientTest.Recorder();
            try (Client c = new Client(new Options().address(n1.gateway).token(Harness.token(device)).listener(r).backoffMs(50, 200))) {
                c.connect();
                Harness.Condition onN2 = () -> "n2".equals(api(n2, "GET", "/v1/admin/devices/demo/" + device, null, Harness.OPS_TOKEN).get("node"));
                assertEquals("n1", api(n2, "GET", "/v1/admin/devices/demo/" + device, null, Harness.OPS_TOKEN).get("node"));

                api(n1, "POST", "/v1/admin/drain", null, Harness.OPS_TOKEN);
                List<String> sent = new ArrayList<>();
                for (int i = 0; i < 20; i++) { // stored pushes through n2 while n1 drains
                    Harness.push(n2, "\"devices\":[\"" + device + "\"],\"data\":\"m" + i + "\",\"ttl\":600");
                    sent.add("m" + i);
                    Thread.sleep(50);
                }
                eventually("the device on n2", onN2);
                assertEquals(Code.GOING_AWAY, r.disconnects.get(0).code());
                eventually("every stored message", () -> r.pushes.size() == sent.size());
                assertEquals(sent, r.pushes.stream().map(Push::text).collect(Collectors.toList()));
            }
        }
    }
}
