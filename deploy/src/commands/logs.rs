//! `cityboard logs COMPONENT`: print (and follow) one component's log.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::home::Home;
use crate::log_tail;

/// Prints the last `lines` lines of a component's log, then follows it.
pub fn run(home: &Home, component: &str, lines: usize, follow: bool) -> Result<()> {
    let path = if component == "supervisor" {
        home.supervisor_log()
    } else {
        home.log_file(component)
    };
    if !path.exists() {
        let known: Vec<String> = std::fs::read_dir(home.logs_dir())
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()?
                            .strip_suffix(".log")
                            .map(|s| s.replace('.', "/"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        bail!(
            "no log for {component:?}; known components: {}",
            known.join(", ")
        );
    }
    println!("{}", log_tail(&path, lines));
    if follow {
        let mut file = std::fs::File::open(&path)?;
        let mut position = file.seek(SeekFrom::End(0))?;
        let mut buf = Vec::new();
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let len = file.metadata()?.len();
            if len < position {
                position = 0;
            }
            file.seek(SeekFrom::Start(position))?;
            buf.clear();
            position += file.read_to_end(&mut buf)? as u64;
            std::io::stdout().write_all(&buf)?;
            std::io::stdout().flush()?;
        }
    }
    Ok(())
}
