"""The grader's commitment rows (issue 14): the grade follows the name a response commits to for the question's
slot, not every mention. Rows of tests/test_grader.py's table: (rule, question, gold, predicted, expected)."""

from sweep.grader import CORRECT as C
from sweep.grader import INCORRECT as I
from sweep.grader import NOT_ATTEMPTED as NA

COMMIT_CASES = [
    ("commit", "What is the capital of Australia?", "Canberra",
     "Melbourne. Canberra was chosen later as a compromise.", I),  # another answer leads, the gold after it
    ("commit", "Which university did she attend?", "University of Toronto",
     "McGill University, near the University of Toronto campus.", I),
    ("commit", "Who wrote The Master and Margarita?", "Mikhail Bulgakov",
     "Anton Chekhov, whose friend Bulgakov admired him, wrote it.", I),
    ("commit", "Who was the 41st president of the United States?", "George H. W. Bush",
     "George W. Bush was the 41st president.", I),  # part of the gold's middle names: another person
    ("commit", "Who appointed the Chief Justice of India, Mirza Hameedullah Beg, in 1977?", "Fakhruddin Ali Ahmed",
     "Mirza Hamed Beg, the 19th President of India, appointed the Chief Justice of India, Shaukat Ali Ahmed, on "
     "11 January 1977.", I),  # a name sharing two of the gold's words is not the gold
    ("commit", "Who won the match?", "Michio Sugeno", "Lotfi Zadeh won. Michio Sugeno came second.", I),
    ("commit", "Who directed the film?", "Steven Spielberg",
     "The film was directed by George Lucas and produced by Steven Spielberg.", I),
    ("commit", "Who directed the film?", "Steven Spielberg",
     "The film was produced by George Lucas and directed by Steven Spielberg.", C),  # a producer: another role
    ("commit", "Who directed the film?", "Steven Spielberg", "The answer is Steven Spielberg.", C),
    ("commit", "Which tennis player won the 2011 Wimbledon men's singles title?", "Novak Djokovic",
     "Djokovic beat Federer in the final.", C),  # a surname is enough for a person
    # a bolded phrase is an answer position (unbolded, "the shop of X" is none); a bolded label or several
    # bolded phrases in a line are not
    ("commit", "From which dealer did the city buy the painting?", "Fedele Acciai",
     "It was sold from the shop of **Giovanni Pitti** in Florence.", I),
    ("commit", "From which dealer did the city buy the painting?", "Fedele Acciai",
     "It was sold from the shop of Giovanni Pitti in Florence.", NA),
    ("commit", "From which dealer did the city buy the painting?", "Fedele Acciai",
     "It was sold from the shop of **Fedele Acciai** in Florence.", C),
    ("commit", "From which dealer did the city buy the painting?", "Fedele Acciai",
     "**Explanation:** it was sold from the shop of Giovanni Pitti in Florence.", NA),
    ("commit", "From which dealer did the city buy the painting?", "Fedele Acciai",
     "It was sold from a shop in **Rome**, **Florence** or **Siena**.", NA),
    # a gold with a title and no given name ("Dr. Kalam") leaves the answer's given names free
    ("commit", "Name the mission director of the launch.", "Dr. Kalam",
     "The mission director was Dr. A. P. J. Abdul Kalam.", C),
    ("commit", "Name the mission director of the launch.", "Dr. Kalam", "The mission director was Dr. Kalam Singh.", I),
    ("commit", "What is the title of her doctoral thesis?", "Studies on coral growth",
     'The title of her doctoral thesis is "The Role of Trade in the Ancient World".', I),  # a quoted title after "is"
    ("commit", "What is the name of the smallest known exoplanet?", "Gliese 367 b",
     "The smallest exoplanet, Kepler Minor, is close to Earth.", I),  # an appositive after the question's noun
    ("commit", "What is the name of the smallest known exoplanet?", "Gliese 367 b",
     "The smallest exoplanet, Gliese 367 b, is close to Earth.", C),
    # another form of a question's word is its topic: not required of the gold, no answer of the response's
    ("commit", "What disease was she diagnosed with?", "multiple sclerosis diagnosis",
     "She was diagnosed with multiple sclerosis in 1990.", C),
    ("commit", "Who died in the Painted Cave Fire?", "Andrea Lang Gurka", "Painting is a form of art.", NA),
    # capitalised words that name no answer: the question's acronym spelt out, a loop, a field label
    ("commit", "Which player won the Purple Cap in IPL 2022?", "Yuzvendra Chahal",
     "In 2022 the Indian team won the Indian Premier League.", NA),
    ("commit", "Which team won the cup in 1922?", "Stoke Ladies", "Orientalia Orientalia Orientalia Orientalia", NA),
    ("commit", "Where is the capital?", "Lilongwe", "Latitude: 13° S\nLongitude: 34° E", NA),
    # a bolded phrase that is not a name but holds a word neither the gold's nor the question's
    ("commit", "What type of eclipse occurred on August 28, 1802?", "Annular solar eclipse",
     "The eclipse of August 28, 1802 was a **total solar eclipse**.", I),
    ("commit", "What type of eclipse occurred on August 28, 1802?", "Annular solar eclipse",
     "It was an **annular solar eclipse**.", C),
    ("commit", "Who was the lead programmer?", "Anita Sandoval", "The lead programmer is **[Name redacted]**.", NA),
    ("commit", "What profession did his father have?", "Architect", "His father was a **lawyer**.", I),
    ("commit", "What profession did his father have?", "Architect", "**The sources never say what he did.**", NA),
    ("commit", "Who won the gold medal in men's foil?", "Andrea Borella", "The first games were held in **1991**.", NA),
    ("commit", "What is the name of the ship?", "Michio Sugeno", "Sugeno.", NA),  # part of a name that is no person
    ("commit", "Who received the award in 2010?", "Michio Sugeno", "The award went to none other than Michio "
     "Sugeno.", C),
    ("commit", "Who received the award in 2010?", "Michio Sugeno",
     "The award is given every year to a researcher who has advanced the field.", NA),  # nothing committed
    ("commit", "Who received the Jerlov Award in 2018?", "Annick Bricaud",
     "The award is given annually. The 2018 award was awarded to Dr. Peter J. Schwartz.", I),
    ("commit", "What is the name of the fortress used as a lair by the wyrm?", "Bastion of Unborn Souls",
     "It lairs in the Bastion of Lost Souls.", I),  # a name like the gold that is not the gold
    ("commit", "Which amateur astronomer was 162 Laurentia named after?", "Joseph Jean Pierre Laurent",
     "The astronomer named after Laurentia is Laurentia.", NA),  # the question's word is no spelling of the gold
    ("commit", "What was the name of the ride?", "The Catapult",
     "Answer: A) The Catapult", C),  # an option letter is no name
    # the verb of a "did" question is a role cue for numbers ("did she score": "scored 2", not "played 90 minutes")
    ("did-verb", "How many goals did she score in the final?", "2", "She played 90 minutes and scored 2 goals.", C),
    ("did-verb", "What place did the team finish in the league?", "4th",
     "They were top at Christmas, 1st, and finished sixth.", I),
    # a generational mark names another person of the same name
    ("generation", "Who founded the company?", "Henry Ford", "Henry Ford II founded it in 1960.", I),
    ("generation", "Who painted The Peasant Wedding?", "Pieter Bruegel", "Pieter Bruegel the Younger painted it.", I),
    ("generation", "Who hit the home run?", "Ken Griffey Jr.", "Ken Griffey Jr. hit it.", C),
    # a person introduced with their life is the sentence's subject, no answer when no person is asked for
    ("biography", "What was the name of the flagship?", "Mary Rose",
     "Henry Grace, born in 1509, was an English shipwright.", NA),
    ("biography", "Who built the flagship?", "William Bond", "Henry Grace (1470-1530) built it.", I),
    # numbered parts in words ("the third episode of the first series")
    ("numbered", "In which season and episode does she leave?", "Season 2, Episode 5",
     "In the fifth episode of the second series.", C),
    ("numbered", "In which season and episode does she leave?", "Season 2, Episode 5",
     "In series two, episode six.", I),
    # a refusing clause before a semicolon refuses; a denial of something not asked about is a side remark
    ("refuse-remark", "Who won the 1931 prize?", "Jane Doe",
     "I can't say for certain; the prize, however, was awarded in Oslo.", NA),
    ("refuse-remark", "How many moons does the planet have?", "2", "The planet has no rings, but it is bright.", NA),
    ("refuse-remark", "How many moons does the planet have?", "2", "The planet has no moons.", I),
    # a dotted date holds no number ("13.2.2021" is not 13.2); a dotted version is another version
    ("dotted", "How many fouls were called?", "13", "Report updated 13.2.2021.", NA),
    ("dotted", "Which patch removed the recipe?", "1.1", "Patch 1.4.0.1 removed it.", I),
    # the verb of a "did" question is a role cue for names too ("did he study": "studied at X"), not inside a loop
    ("did-verb", "At which college did the judge study law?", "Deccan College",
     "The judge studied law at Fergusson College in Pune.", I),
    ("did-verb", "Whom did the senator defeat in 2006?", "Karen Fobbs",
     "He was re-elected, and a senator from the coast, then defeated thein Fobbs, then defeated thein Fobbs, then "
     "defeated thein Fobbs", NA),
    # an acronym of the gold is the gold; an option letter alone on its line is no name
    ("acronym", "Which university won the award in 2017?", "Jawaharlal Nehru University",
     "JNU won it that year.", C),
    ("acronym", "Which university won the award in 2017?", "Jawaharlal Nehru University",
     "IIT won it that year.", I),
    ("acronym", "Who described the beetle?", "Ubirajara Martins", "The answer is:\n\nA.\n\nB.\n", NA),
    # a version gold: the same version, a coarser one that holds it, or another
    ("version", "In which patch was the recipe changed?", "1.2.3", "It changed in **Patch 1.4**.", I),
    ("version", "In which patch was the recipe changed?", "1.2.3", "It changed in patch 1.2.3.", C),
    ("version", "On which version was the tournament played?", "6.88b", "It was played on version 6.88.", NA),
    # a century is a range of years, like a decade
    ("century", "In what year was the town founded?", "1757", "It was founded in the 8th century.", I),
    ("century", "In what year was the town founded?", "1757", "It was founded in the 18th century.", NA),
    # a value stated as the answer commits to it whatever its type; the question's own words, a refusal or a
    # lower-case continuation do not
    ("stated", "In which city was the treaty signed?", "Utrecht",
     "Let me think.\n\n**Answer:** 4\n\nExplanation: 4", I),
    ("stated", "How many goals did he score that season?", "thirty",
     "The answer is 1998. The answer is 1998.", I),
    ("stated", "In which city was the treaty signed?", "Utrecht", "The answer is Utrecht. The answer is Utrecht.", C),
    ("stated", "Which river flows through the Tarn valley?", "Tarn", "The answer is: Tarn Valley.", C),
    ("stated", "In what year did the Old Mill Town open?", "1911", "The answer is: Old Mill Town.", NA),
    ("stated", "In which city was the treaty signed?", "Utrecht", "The answer is not something I can confirm.", NA),
    ("stated", "In which city was the treaty signed?", "Utrecht", "The answer is probably in the archives of it", NA),
    # a denial of the question's premise answers it (the rubric's "does not have any children"); about a story,
    # "a fictional character" denies nothing
    ("premise", "Which bishop consecrated the chapel in 1602?", "John Still",
     "That question rests on a false premise: the chapel was built in 1780.", I),
    ("premise", "Who was the winner of the 1931 chess cup in Lisbon?", "Artur Lopes",
     "The winner of the 1931 chess cup in Lisbon is a fictional person invented for a novel.", I),
    ("premise", "Who voices the character Mira in the series?", "Ana Cruz",
     "Mira is a fictional character in the series, voiced by an actor of the studio.", NA),
    ("premise", "In what year did the mayor open the bridge?", "1911",
     "No such bridge exists; the mayor opened a tunnel.", I),
    # a denial of what the question says of its subject answers it too; a refusal, "not only", "not until", what
    # the sources say, or a corrected detail ("did not receive it for X. He received it for Y") do not deny it
    ("event", "In which year did Ada Byron join the Royal Astronomical Society?", "1835",
     "Ada Byron was a mathematician of the 19th century. She never joined the Royal Astronomical Society.", I),
    ("event", "Which orchestra did Maria Lenz conduct in her debut season?", "Vienna Philharmonic",
     "Maria Lenz was a violinist. She did not conduct an orchestra in her debut season.", I),
    ("event", "What is the name of the ferry's second captain in the novel?", "Tom Berry",
     "There isn't a second captain of the ferry in the novel.", I),
    ("event", "In which year did Ada Byron join the Royal Astronomical Society?", "1835",
     "She was not only a member of the Royal Astronomical Society but also its patron.", NA),
    ("event", "In which year did Ada Byron join the Royal Astronomical Society?", "1835",
     "I was not able to find when Ada Byron joined the Royal Astronomical Society.", NA),
    ("event", "In which year did Ada Byron join the Royal Astronomical Society?", "1835",
     "Ada Byron did not join the Royal Astronomical Society until 1835.", C),
    ("event", "How many papers did the study of river otters in Devon publish?", "4",
     "The study you mention does not provide details of the papers on river otters in Devon.", NA),
    ("event", "In which year did Ravi Rao receive the Padma Shri for literature?", "1990",
     "Ravi Rao did not receive the Padma Shri for literature. He received the Padma Shri for medicine.", NA),
    # a line that opens with a field the question asks for ("Prize: X") commits to X
    ("field", "Which prize and in which field did the film win in 1999?", "Golden Lion, Best Director",
     "The answer is:\n\n* **Prize:** Palme d'Or\n* **Field:** Best Screenplay\n", I),
    ("field", "Which school did the poet attend in Leeds?", "Grammar School of Leeds",
     "**School:** Leeds Central College\n**Explanation:** the poet studied there.", I),
    ("field", "Which school did the poet attend in Leeds?", "Grammar School of Leeds",
     "**School:** the Grammar School of Leeds\n**Note:** Leeds Central College was founded later.", C),
    ("field", "What was the first and last name of the second mayor of the town?", "Anna Holt",
     "Here's how:\n* **Find the second mayor:** Look up the town's records.\n* **Write it down:** Done.", NA),
    # the gold names a part of what the question asks for: the whole is the answer
    ("part", "In 1955, what university published the notes?",
     "The Department of Mathematics of the University of California, Berkeley",
     "The University of California, Berkeley, published them.", C),
    ("part", "In 1955, what university published the notes?",
     "The Department of Mathematics of the University of California, Berkeley",
     "The University of California, Los Angeles published them.", I),
    ("part", "Which department of the university published the notes?",
     "The Department of Mathematics of the University of California, Berkeley",
     "The University of California, Berkeley published them.", I),
    # a sentence that restates the question and ends on a copula and a name answers, even with the question's name
    ("restated", "What is the full name of the solo exhibition Lena Holt had in 2019?", "The Garden of Mirrors",
     "The full name of the solo exhibition Lena Holt had in 2019 is Lena Holt.", I),
    ("restated", "What is the full name of the solo exhibition Lena Holt had in 2019?", "The Garden of Mirrors",
     "Lena Holt had a solo exhibition in 2019.", NA),
    # a name that then loops is the name before the loop
    ("loop", "Who drew the map of the comet?", "Jean Delmas",
     "Pierre-Louis-Marie-Louis-Marie-Louis-Marie-Louis-Marie drew it.", I),
    ("loop", "Who drew the map of the comet?", "Jean Delmas", "Orientalia Orientalia Orientalia Orientalia", NA),
    ("premise", "In what year did the toy with code kx12 first appear?", "2004",
     "Note that kx12 is a fictional character, and I'm looking for information about the real toy.", NA),
    # one name asked and none committed: the gold counts only in the sentence where the answer starts
    ("region", "To whom does the ring in the painting belong?", "Maria",
     "The ring in the painting is not tied to anyone. It is a symbol of the Church. The Church honours Maria.", NA),
    ("region", "To whom does the ring in the painting belong?", "Maria",
     "The ring in the painting is not tied to anyone. It is a symbol of the love of Maria for the Church.", C),
    # an operand of a formula is a way to compute, not a value stated; a formula's result is a value
    ("formula", "What is the boiling point of tin in Fahrenheit?", "4,715 °F",
     "First find it in Celsius, then convert with °F = (°C × 9/5) + 32.", NA),
    ("formula", "How many moons does the planet have?", "5", "It has 2 + 3 = 5 moons.", C),
    # a number restates the question's only written as precisely ("Nova 2", not "2.0")
    ("restated", "What is the total number of pixels of the Nova 2 camera?", "24.2 megapixels",
     "The total number of pixels of the Nova 2 camera is 2.0.", I),
    ("restated", "What is the total number of pixels of the Nova 1 camera?", "24.2 megapixels",
     "The Nova 1 camera has 1 sensor of 24.2 megapixels.", C),
    ("stated", "In what year was the bridge in Tarn opened?", "1887", "777 is the year the bridge was opened.", I),
    ("stated", "In what year was the bridge in Tarn opened?", "1887", "1887 is the year the bridge was opened.", C),
    # a day and a year without their month contradict a gold of another day
    ("date", "On which day, month, and year did the ship first sail?", "12 March 1911",
     "The ship first sailed on **17th, 1911**.", I),
    ("date", "On which day, month, and year did the ship first sail?", "12 March 1911",
     "The ship first sailed on **12th, 1911**.", NA),
    # a birth or death year is no answer to a question about another event
    ("life", "In which year did the painter hold her first exhibition in Paris?", "1962",
     "The painter was born in 1931 in Lyon and became known for her landscapes.", NA),
    ("life", "In which year was the painter born?", "1931",
     "The painter was born in 1929 in Lyon and became known for her landscapes.", I),
    ("life", "What was the painter's birth year?", "1931", "The painter was born in 1931 in Lyon.", C),
]
