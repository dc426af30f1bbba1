// The SDK from Kotlin, as it is: TestKotlin (java_test.go) compiles this
// against the SDK's jar and runs it against a real server:
// kotlin -cp longlink-client.jar:. UsageKt ADDRESS TOKEN
import io.longlink.client.Client
import io.longlink.client.Listener
import io.longlink.client.LonglinkException
import io.longlink.client.Options
import io.longlink.client.Push
import io.longlink.client.SeqStore
import io.longlink.client.Welcome

// A seq store as an app would write one (on Android: SharedPreferences).
class MapSeqStore : SeqStore {
    private val seqs = HashMap<String, Long>()
    override fun get(app: String) = seqs[app] ?: 0L
    override fun set(app: String, seq: Long) { seqs[app] = seq }
}

fun main(args: Array<String>) {
    val client = Client(Options()
        .address(args[0])
        .token(args[1])
        .seqStore(MapSeqStore())
        .network { "wifi" }
        .listener(object : Listener {
            override fun onConnected(welcome: Welcome) = println("connected as ${welcome.device()}")
            override fun onPush(push: Push) = println("push ${push.text()}")
            override fun onClosed(why: LonglinkException) = println("closed: ${why.reason()}")
        }))
    val welcome = client.connect()
    println("apps ${welcome.apps()}, heartbeat ${welcome.heartbeatSeconds()} s")
    client.close()
}
